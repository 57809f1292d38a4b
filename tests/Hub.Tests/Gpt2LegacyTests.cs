using Hub.Converters;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>Old GPT-2 hub checkpoints: names without "transformer.", attn.bias/masked_bias buffers, an lm_head copy.</summary>
public class Gpt2LegacyTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-legacy");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public void Legacy_names_and_buffers_load_and_match_golden()
    {
        var src = SharedDir.Require("fixtures/gpt2-tiny");
        var dir = Path.Combine(_tmp, "legacy");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(src).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var tensors = new Dictionary<string, SafetensorsTensor>();
        using (var st = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
        {
            foreach (var name in ((Hub.Weights.ITensorSource)st).Names)
            {
                var v = st.OpenTensor(name);
                tensors[name.Replace("transformer.", "", StringComparison.Ordinal)] = new SafetensorsTensor(v.DType, v.Shape, v.Bytes.ToArray());
            }
        }
        // The causal-mask buffers old checkpoints carry: ignored by the loader.
        var mask = new byte[128 * 128 * 4];
        for (int l = 0; l < 2; l++)
        {
            tensors[$"h.{l}.attn.bias"] = new SafetensorsTensor(DType.F32, new Shape(1, 1, 128, 128), mask);
            tensors[$"h.{l}.attn.masked_bias"] = new SafetensorsTensor(DType.F32, Shape.Scalar, new byte[4]);
        }
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);

        var golden = Golden.Load(Path.Combine(src, "golden.json"));
        var c = golden["cases"]![0]!;
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var logits = lm.Logits(Golden.Ints2(c["input_ids"])[0]);
        Golden.Close(Golden.Floats(c["logits_last"]![0]), logits[^1], 1e-4f, "legacy gpt2");
    }
}
