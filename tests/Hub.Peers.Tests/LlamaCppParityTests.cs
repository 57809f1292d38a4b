using Hub.Benchmarks.Peers;
using Hub.Converters.Formats;
using Hub.IR;
using Hub.Tests;
using Xunit.Abstractions;

namespace Hub.Peers.Tests;

/// <summary>
/// stories260K converted to GGUF and run by llama.cpp (LLamaSharp) gives the logits Hub gives on the same ids: this
/// checks the tensor mapping, the RoPE permutation back to interleaved pairs, the hyper-parameters and the vocab.
/// </summary>
public class LlamaCppParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-gguf-parity");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    // Prompt ids: BOS then a stretch of the vocabulary (stories260K has 512 pieces).
    private static readonly int[] Prompt = [1, 403, 407, 261, 378, 300, 289, 276, 350, 263, 305, 412, 269, 317, 271, 441, 329, 282, 268, 395];

    private CausalLM LoadHub() =>
        CausalLM.FromPretrained(SharedDir.Require("models/karpathy/tinyllamas/stories260K"), export: true,
            new ModelOptions { ExportCacheDir = Path.Combine(_tmp, "ir"), Threads = 1 });

    private string Gguf(CausalLM lm, GgmlType type)
    {
        using var ir = IrModel.Load(lm.Directory);
        var path = Path.Combine(_tmp, $"stories260K.{type}.gguf");
        var result = GgufLlamaExporter.Export(ir, path, type);
        Assert.Equal(2 + 5 * 9, result.Tensors); // token_embd, output_norm, 9 per block; tied head: no output
        return path;
    }

    [SkippableFact]
    public void F32_gguf_logits_match_hub_at_every_position()
    {
        using var lm = LoadHub();
        var path = Gguf(lm, GgmlType.F32);
        var meta = GgufReader.Open(path).Metadata;
        Assert.Equal("llama", meta["general.architecture"]);
        Assert.Equal(4u, meta["llama.attention.head_count_kv"]);
        Assert.Equal(512, ((string[])meta["tokenizer.ggml.tokens"]).Length);

        var hub = lm.Logits(Prompt);
        using var peer = LlamaCppPeer.Load(path, threads: 1, contextSize: 64, f32Cache: true);
        var cpp = peer.Logits(Prompt);
        Assert.Equal(hub.Length, cpp.Length);
        double maxDiff = 0;
        for (int t = 0; t < Prompt.Length; t++)
        {
            Assert.Equal(hub[t].Length, cpp[t].Length);
            Assert.True(ArgMax(hub[t]) == ArgMax(cpp[t]), $"position {t}: Hub top-1 {ArgMax(hub[t])}, llama.cpp {ArgMax(cpp[t])}");
            double rowDiff = 0;
            for (int v = 0; v < hub[t].Length; v++) rowDiff = Math.Max(rowDiff, Math.Abs(hub[t][v] - cpp[t][v]));
            output.WriteLine($"position {t}: max diff {rowDiff:E2}, max |logit| {hub[t].Max(Math.Abs):F2}");
            maxDiff = Math.Max(maxDiff, rowDiff);
        }
        // Both engines compute in f32 here (F32 weights, f32 KV cache, no flash attention); stories260K logits span
        // about ±18 and measure ≈ 2e-5 apart, so 1e-4 allows summation-order rounding only; a layout error (RoPE pairs,
        // q/k/v split, norms) gives differences > 1. (With llama.cpp's default f16 cache + flash attention: ≈ 2e-2.)
        output.WriteLine($"max |Hub - llama.cpp| = {maxDiff:E3} over {Prompt.Length} positions; native library {LlamaCppPeer.NativeLibraryPath}");
        Assert.True(maxDiff < 1e-4, $"max |Hub - llama.cpp| logit difference {maxDiff}");
    }

    [SkippableTheory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q8_0)]
    public void Reduced_precision_gguf_generates_hubs_greedy_tokens(GgmlType type)
    {
        using var lm = LoadHub();
        var path = Gguf(lm, type);
        var reader = GgufReader.Open(path);
        Assert.Equal(type, reader.Tensor("blk.0.attn_q.weight").Type);
        Assert.Equal(GgmlType.F32, reader.Tensor("blk.0.attn_norm.weight").Type);

        int[] prompt = Prompt[..8];
        const int steps = 8;
        var hubIds = new int[steps];
        lm.Reset();
        hubIds[0] = ArgMax(lm.Forward(prompt, 1, prompt.Length, default).ToArray());
        for (int s = 1; s < steps; s++) hubIds[s] = ArgMax(lm.Forward(hubIds.AsSpan(s - 1, 1), 1, 1, default).ToArray());
        using var peer = LlamaCppPeer.Load(path, threads: 1, contextSize: 64);
        var round = peer.Run(prompt, steps - 1);
        Assert.Equal(hubIds, round.Tokens);
    }

    [SkippableTheory]
    [InlineData(WeightFormat.Int8, GgmlType.Q8_0)]
    [InlineData(WeightFormat.Int4, GgmlType.Q4_0)]
    public void Group32_symmetric_hub_export_is_copied_into_gguf_blocks_and_llama_cpp_generates_hubs_tokens(WeightFormat format, GgmlType type)
    {
        using var lm = CausalLM.FromPretrained(SharedDir.Require("models/karpathy/tinyllamas/stories260K"), export: true, new ModelOptions
        {
            ExportCacheDir = Path.Combine(_tmp, "ir-" + format), Threads = 1,
            WeightFormat = format, GroupSize = 32, Symmetric = true, AllLayers = format == WeightFormat.Int4,
        });
        using var ir = IrModel.Load(lm.Directory);
        var path = Path.Combine(_tmp, $"q.{type}.gguf");
        var result = GgufLlamaExporter.Export(ir, path, type);
        output.WriteLine($"{format}: {result.CopiedExact} tensors copied exactly; fallbacks: {string.Join("; ", result.Fallbacks)}");
        Assert.True(result.CopiedExact >= 5 * 4, $"only {result.CopiedExact} tensors copied exactly"); // q, k, v, o per block at least

        // Same weight numbers in both engines, but llama.cpp's Q8_0/Q4_0 matmuls quantize the activations to Q8_0
        // blocks, so logits differ by about 0.1–0.3 on this model (logits span ±18); a block-layout or scale error
        // gives differences of several units. Teacher-forced, so one near-tie cannot cascade.
        AssertTeacherForcedLogitsClose(lm, path, 0.6);
    }

    [SkippableFact]
    public void Bf16_hub_export_is_written_bit_for_bit_and_llama_cpp_gives_hubs_logits()
    {
        using var lm = CausalLM.FromPretrained(SharedDir.Require("models/karpathy/tinyllamas/stories260K"), export: true, new ModelOptions
        {
            ExportCacheDir = Path.Combine(_tmp, "ir-bf16"), Threads = 1, WeightFormat = WeightFormat.BF16, KvCachePrecision = Hub.Runtime.KvCachePrecision.F32,
        });
        using var ir = IrModel.Load(lm.Directory);
        var path = Path.Combine(_tmp, "bf16.gguf");
        GgufLlamaExporter.Export(ir, path, GgmlType.BF16);
        var reader = GgufReader.Open(path);
        var down = reader.Tensor("blk.0.ffn_down.weight");
        Assert.Equal(GgmlType.BF16, down.Type);
        Assert.Equal(ir.GetWeight("model.layers.0.mlp.down_proj.weight").Bytes.ToArray(), reader.ReadBytes(down));

        // Same bf16 weights in both engines; llama.cpp's bf16 matmul also rounds the activations to bf16 (its
        // vec_dot_type), Hub keeps them f32, so logits (spanning ±18) differ by 0.03–0.09; a layout error gives units.
        AssertTeacherForcedLogitsClose(lm, path, 0.3);
    }

    // Teacher-forced logits of Hub and llama.cpp (f32 cache) on the prompt: every position within maxDiff, top-1 equal
    // at all but two positions (teacher forcing keeps one near-tie from cascading).
    private void AssertTeacherForcedLogitsClose(CausalLM lm, string gguf, double maxDiff)
    {
        using var peer = LlamaCppPeer.Load(gguf, threads: 1, contextSize: 64, f32Cache: true);
        var hubLogits = lm.Logits(Prompt);
        var cppLogits = peer.Logits(Prompt);
        int agree = 0;
        for (int t = 0; t < Prompt.Length; t++)
        {
            double diff = hubLogits[t].Zip(cppLogits[t], (a, b) => Math.Abs(a - b)).Max();
            output.WriteLine($"position {t}: top-1 Hub {ArgMax(hubLogits[t])} llama.cpp {ArgMax(cppLogits[t])}, max diff {diff:E2}");
            Assert.True(diff < maxDiff, $"position {t}: max |Hub - llama.cpp| {diff}");
            if (ArgMax(hubLogits[t]) == ArgMax(cppLogits[t])) agree++;
        }
        Assert.True(agree >= Prompt.Length - 2, $"top-1 agrees at {agree}/{Prompt.Length} positions");
    }

    private static int ArgMax(float[] row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
