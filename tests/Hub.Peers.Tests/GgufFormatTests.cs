using System.Buffers.Binary;
using Hub.Converters.Formats;
using Hub.Tests;

namespace Hub.Peers.Tests;

/// <summary>The GGUF writer, reader and llama.cpp's reference block quantizers.</summary>
public class GgufFormatTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-gguf");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Fact]
    public void Written_file_reads_back_metadata_tensors_and_alignment()
    {
        var w = new GgufWriter();
        w.Add("general.architecture", "llama");
        w.Add("llama.block_count", 3u);
        w.Add("x.f", 1.5f);
        w.Add("x.b", true);
        w.Add("x.s", new[] { "a", "▁b", "" });
        w.Add("x.i", new[] { 1, -2 });
        w.Add("x.fa", new[] { 0.25f });
        var a = Enumerable.Range(0, 3 * 32).Select(i => (float)Math.Sin(i)).ToArray();
        w.AddTensor("t.f32", GgmlType.F32, [3], s => s.Write(Bytes(GgmlType.F32, [1f, 2f, 3f])));
        w.AddTensor("t.q8", GgmlType.Q8_0, [32, 3], s => s.Write(Bytes(GgmlType.Q8_0, a)));
        w.AddTensor("t.q4", GgmlType.Q4_0, [32, 3], s => s.Write(Bytes(GgmlType.Q4_0, a)));
        w.AddTensor("t.f16", GgmlType.F16, [5], s => s.Write(Bytes(GgmlType.F16, [1, 2, 3, 4, 5])));
        var path = Path.Combine(_tmp, "m.gguf");
        w.Write(path);

        var r = GgufReader.Open(path);
        Assert.Equal(3u, r.Version);
        Assert.Equal(32u, r.Metadata["general.alignment"]);
        Assert.Equal("llama", r.Metadata["general.architecture"]);
        Assert.Equal(3u, r.Metadata["llama.block_count"]);
        Assert.Equal(1.5f, r.Metadata["x.f"]);
        Assert.Equal(true, r.Metadata["x.b"]);
        Assert.Equal(new[] { "a", "▁b", "" }, (string[])r.Metadata["x.s"]);
        Assert.Equal(new[] { 1, -2 }, (int[])r.Metadata["x.i"]);
        Assert.All(r.Tensors, t => Assert.Equal(0, t.Offset % 32));
        Assert.Equal(new[] { 1f, 2f, 3f }, r.ReadF32("t.f32"));
        Assert.Equal(new long[] { 32, 3 }, r.Tensor("t.q8").Ne);
        Assert.Equal(3 * 34, r.Tensor("t.q8").Bytes);
        Assert.Equal(3 * 18, r.Tensor("t.q4").Bytes);
        var q8 = r.ReadF32("t.q8");
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(q8[i] - a[i]) <= 1.0 / 127 * 0.51 + 1e-3, $"q8[{i}]");
        var q4 = r.ReadF32("t.q4");
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(q4[i] - a[i]) <= 1.0 / 8 + 1e-3, $"q4[{i}]");
        Assert.Equal(new[] { 1f, 2f, 3f, 4f, 5f }, r.ReadF32("t.f16"));
        Assert.False(File.Exists(path + $".tmp{Environment.ProcessId}"));
    }

    [Fact]
    public void Bf16_rounds_to_nearest_even_like_ggml_and_reads_back()
    {
        // ggml_compute_fp32_to_bf16: u + 0x7fff + ((u >> 16) & 1), upper half; ties go to the even bf16
        float tieDown = BitConverter.UInt32BitsToSingle(0x3f808000u), tieUp = BitConverter.UInt32BitsToSingle(0x3f818000u);
        float above = BitConverter.UInt32BitsToSingle(0x3f808001u);
        var b = Bytes(GgmlType.BF16, [1f, tieDown, tieUp, above, -2.5f]);
        Assert.Equal(10, b.Length);
        var bits = Enumerable.Range(0, 5).Select(i => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(2 * i))).ToArray();
        Assert.Equal(new ushort[] { 0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc020 }, bits);
        Assert.Equal(new[] { 1f, 1f, BitConverter.UInt32BitsToSingle(0x3f820000u), BitConverter.UInt32BitsToSingle(0x3f810000u), -2.5f },
            GgufQuant.Dequantize(GgmlType.BF16, b));
        Assert.Equal(GgmlType.BF16, GgufLlamaExporter.ParseType("bf16"));
    }

    [Fact]
    public void Q8_0_block_matches_llama_cpp_reference_rounding()
    {
        var x = new float[32];
        x[0] = 1.27f; x[1] = -0.635f; x[2] = 0.005f; x[3] = 0.015f;
        var b = Bytes(GgmlType.Q8_0, x);
        Assert.Equal(34, b.Length);
        Assert.Equal((Half)(1.27f / 127f), BinaryPrimitives.ReadHalfLittleEndian(b));
        float id = 1f / (1.27f / 127f);
        Assert.Equal(127, (sbyte)b[2]);
        Assert.Equal((sbyte)MathF.Round(-0.635f * id, MidpointRounding.AwayFromZero), (sbyte)b[3]);
        Assert.Equal((sbyte)MathF.Round(0.015f * id, MidpointRounding.AwayFromZero), (sbyte)b[5]);
        Assert.All(b.Skip(6), v => Assert.Equal(0, v));
    }

    [Fact]
    public void Q4_0_packs_value_j_low_and_j_plus_16_high_with_signed_max_scale()
    {
        var x = new float[32];
        x[0] = -2f;     // largest magnitude, negative: d = -2 / -8 = 0.25, q = trunc(-8 + 8.5) = 0
        x[16] = 1f;     // q = trunc(-4 + 8.5) = 4... with d = 0.25: x·(1/d) = 4 → trunc(12.5) = 12
        x[1] = 0.3f;    // 1.2 + 8.5 = 9.7 → 9
        var b = Bytes(GgmlType.Q4_0, x);
        Assert.Equal(18, b.Length);
        Assert.Equal((Half)0.25f, BinaryPrimitives.ReadHalfLittleEndian(b));
        Assert.Equal(0 | (12 << 4), b[2]);
        Assert.Equal(9 | (8 << 4), b[3]);
        var back = GgufQuant.Dequantize(GgmlType.Q4_0, b);
        Assert.Equal(-2f, back[0]); Assert.Equal(1f, back[16]); Assert.Equal(0.25f, back[1]);
    }

    [Fact]
    public void Rope_row_map_matches_convert_hf_to_gguf_permute()
    {
        // permute(w, n_head): reshape(n_head, 2, hd/2, ...).swapaxes(1, 2): row (h, i, j) ← (h, j, i).
        var map = GgufLlamaExporter.RowMap(10, 8, heads: 2);
        Assert.Equal(new[] { 10, 12, 11, 13, 14, 16, 15, 17 }, map);
        Assert.Equal(new[] { 3, 4, 5 }, GgufLlamaExporter.RowMap(3, 3));
    }

    [Fact]
    public void Truncated_file_throws_naming_the_file()
    {
        var w = new GgufWriter();
        w.AddTensor("t", GgmlType.F32, [64], s => s.Write(new byte[256]));
        var path = Path.Combine(_tmp, "t.gguf");
        w.Write(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^100]);
        var e = Assert.Throws<CheckpointFormatException>(() => GgufReader.Open(path));
        Assert.Contains("t.gguf", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Writer_rejects_a_tensor_callback_that_writes_the_wrong_size_and_leaves_no_file()
    {
        var w = new GgufWriter();
        w.AddTensor("t", GgmlType.Q8_0, [32], s => s.Write(new byte[10]));
        var path = Path.Combine(_tmp, "bad.gguf");
        Assert.Throws<InvalidOperationException>(() => w.Write(path));
        Assert.Empty(Directory.EnumerateFiles(_tmp, "bad.gguf*"));
    }

    private static byte[] Bytes(GgmlType t, float[] x)
    {
        var b = new byte[t.RowBytes(x.Length)];
        GgufQuant.Encode(t, x, b);
        return b;
    }
}
