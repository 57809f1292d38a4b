using System.Buffers.Binary;
using Hub.Converters;
using Hub.Converters.Compression;
using Hub.Converters.Formats;
using Hub.IR;
using Hub.Models;
using Hub.Tests;

namespace Hub.Converters.Tests;

/// <summary>
/// The GGUF writer copies group-32 symmetric int8/int4 IR blocks into Q8_0/Q4_0 blocks. Current exports store the scales
/// as F16 (their half bits are copied); exports from before session 4 store the same values as F32 (rounded to half on
/// the way out). Both must give the same file, byte for byte.
/// </summary>
public class GgufQuantCopyTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-gguf-copy");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableTheory]
    [InlineData(WeightCompressor.Int8, GgmlType.Q8_0)]
    [InlineData(WeightCompressor.Int4, GgmlType.Q4_0)]
    public void Gguf_from_f16_scales_equals_gguf_from_exact_f32_scales_byte_for_byte(string scheme, GgmlType type)
    {
        var src = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var f16Dir = ExportIr(src, scheme, f32Scales: false);
        var f32Dir = ExportIr(src, scheme, f32Scales: true);

        var f16 = WriteGguf(f16Dir, type, DType.F16);
        var f32 = WriteGguf(f32Dir, type, DType.F32);
        Assert.True(f16.Result.CopiedExact > 0, "no tensor took the block-copy path");
        Assert.Equal(f32.Result.CopiedExact, f16.Result.CopiedExact);
        Assert.Equal(f32.Bytes.Length, f16.Bytes.Length);
        int firstDiff = f16.Bytes.AsSpan().CommonPrefixLength(f32.Bytes);
        Assert.True(firstDiff == f16.Bytes.Length, $"the GGUF files differ from byte {firstDiff} on");

        // The copied blocks carry the IR's half bits: block 0 of token_embd starts with scale 0 of the embedding.
        using var ir = IrModel.Load(f16Dir);
        var scales = ir.GetWeight(ir.WeightInfo("model.embed_tokens.weight").Quant!.Scales);
        var gguf = GgufReader.Open(f16.Path);
        var embd = gguf.Tensors.Single(t => t.Name == "token_embd.weight");
        Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(scales.Bytes), BinaryPrimitives.ReadUInt16LittleEndian(f16.Bytes.AsSpan(checked((int)embd.Offset))));
    }

    /// <summary>Exports stories260K as group-32 symmetric <paramref name="scheme"/> IR (every matrix), scales F16 or F32.</summary>
    private string ExportIr(string src, string scheme, bool f32Scales)
    {
        // Same folder name in both (general.name is the folder's name), different parents.
        var dir = Path.Combine(_tmp, $"{scheme}-{(f32Scales ? "f32" : "f16")}-scales", "stories260K");
        var source = SourceDetector.Detect(src);
        try
        {
            var export = ModelRegistry.Resolve(source.Config, source.ConfigPath).Build(source, ExportSettings.Default);
            var compressor = new WeightCompressor(new WeightCompressionOptions { Scheme = scheme, GroupSize = 32, Symmetric = true, AllLayers = scheme == WeightCompressor.Int4 });
            Func<PendingWeight, float[], IReadOnlyList<EncodedWeight>?> encode = compressor.Encode;
            if (f32Scales) encode = (w, data) => compressor.Encode(w, data)?.Select(ScalesAsF32).ToList();
            IrFormat.Write(dir, export, new IrWriteOptions { Encoder = encode });
        }
        finally { source.Weights.Dispose(); }
        foreach (var tok in Directory.GetFiles(src, "tok*.bin")) File.Copy(tok, Path.Combine(dir, Path.GetFileName(tok)));
        return dir;
    }

    /// <summary>An F16 scale tensor rewritten as F32 (exact: every half is a float).</summary>
    private static EncodedWeight ScalesAsF32(EncodedWeight e)
    {
        if (e.DType != DType.F16 || !e.Name.EndsWith(".scales", StringComparison.Ordinal)) return e;
        var f = new byte[e.Data.Length * 2];
        for (int i = 0; i < e.Data.Length / 2; i++)
            BinaryPrimitives.WriteSingleLittleEndian(f.AsSpan(4 * i), (float)BinaryPrimitives.ReadHalfLittleEndian(e.Data.AsSpan(2 * i)));
        return e with { DType = DType.F32, Data = f };
    }

    private (GgufExportResult Result, string Path, byte[] Bytes) WriteGguf(string irDir, GgmlType type, DType expectedScales)
    {
        using var ir = IrModel.Load(irDir);
        var quantized = ir.Graph.Weights.Where(w => w.Quant is not null).ToList();
        Assert.NotEmpty(quantized);
        Assert.All(quantized, w => Assert.Equal(expectedScales, ir.WeightInfo(w.Quant!.Scales).DType));
        var path = Path.Combine(Path.GetDirectoryName(irDir)!, "model.gguf");
        var result = GgufLlamaExporter.Export(ir, path, type);
        return (result, path, File.ReadAllBytes(path));
    }
}
