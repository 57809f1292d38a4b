using Hub.Converters.Compression;
using Hub.IR;
using Hub.Weights;

namespace Hub.Converters.Tests;

/// <summary>The quantizer against hand-computed values of docs/quantization.md (Q8_0/Q4_0 rounding, NNCF asymmetric).</summary>
public class WeightCompressorTests
{
    private static PendingWeight Pending(string name, float[] data, int n, int k, WeightKind kind) =>
        new(name, LazyTensor.FromArray(data, new Shape(n, k), "test"), kind);

    [Fact]
    public void Int8_symmetric_per_channel_matches_hand_computed_values()
    {
        var q = WeightCompressor.Quantize(new float[] { 1f, -2f, 0.5f, 4f }, 1, 4, "int8", 0, symmetric: true);
        // s = f16(4/127) = 1032/1024 · 2^-5; q = round(x / s)
        Assert.Equal(0.031494140625f, q.Scales[0]);
        Assert.Equal(new sbyte[] { 32, -64, 16, 127 }, q.Data.Select(b => (sbyte)b).ToArray());
        Assert.Null(q.Zeros);
    }

    [Fact]
    public void Int8_symmetric_rounds_half_away_from_zero_like_Q8_0()
    {
        // amax 127 gives s = 1 exactly, so x / s hits the .5 ties
        var q = WeightCompressor.Quantize(new float[] { 127f, 2.5f, -2.5f, 0.5f, -0.5f, -127f }, 1, 6, "int8", 0, symmetric: true);
        Assert.Equal(1f, q.Scales[0]);
        Assert.Equal(new sbyte[] { 127, 3, -3, 1, -1, -127 }, q.Data.Select(b => (sbyte)b).ToArray());
    }

    [Fact]
    public void Int4_symmetric_matches_Q4_0_rounding_and_nibble_order()
    {
        var x = Enumerable.Range(0, 32).Select(j => (float)(j - 16)).ToArray();   // -16 .. 15: largest magnitude is -16
        var q = WeightCompressor.Quantize(x, 1, 32, "int4", 32, symmetric: true);
        Assert.Equal(2f, q.Scales[0]);                       // s = -16 / -8
        Assert.Equal(16, q.Data.Length);
        // byte j = q[j] | q[j+16] << 4 with q = min(15, trunc(x/2 + 8.5))
        Assert.Equal(0x80, q.Data[0]);   // x=-16 → 0, x=0 → 8
        Assert.Equal(0x91, q.Data[1]);   // x=-15 → 1, x=1 → 9
        Assert.Equal(0x91, q.Data[2]);   // x=-14 → 1 (trunc 1.5), x=2 → 9
        Assert.Equal(0xA2, q.Data[3]);   // x=-13 → 2, x=3 → 10
        Assert.Equal(0xF8, q.Data[15]);  // x=-1 → 8, x=15 → min(15, 16)
        var back = WeightCompressor.Dequantize(q);
        Assert.Equal(-16f, back[0]);
        Assert.Equal(14f, back[31]);
    }

    [Fact]
    public void Int4_symmetric_with_positive_extreme_gets_a_negative_scale()
    {
        var x = new float[32];
        x[5] = 16f; x[6] = -4f;
        var q = WeightCompressor.Quantize(x, 1, 32, "int4", 0, symmetric: true);
        Assert.Equal(-2f, q.Scales[0]);
        var back = WeightCompressor.Dequantize(q);
        Assert.Equal(16f, back[5]);
        Assert.Equal(-4f, back[6]);
        Assert.Equal(0f, back[0]);
    }

    [Fact]
    public void All_zero_groups_get_zero_scale_and_dequantize_to_zero()
    {
        var x = new float[64];
        for (int i = 32; i < 64; i++) x[i] = i * 0.01f;
        foreach (var (scheme, sym) in new[] { ("int8", true), ("int8", false), ("int4", true), ("int4", false) })
        {
            var q = WeightCompressor.Quantize(x, 1, 64, scheme, 32, sym);
            Assert.Equal(0f, q.Scales[0]);
            Assert.NotEqual(0f, q.Scales[1]);
            if (scheme == "int4" && sym) Assert.Equal(0x88, q.Data[0]);   // q = z = 8
            var back = WeightCompressor.Dequantize(q);
            Assert.All(back.Take(32), v => Assert.Equal(0f, v));
        }
    }

    [Fact]
    public void Int8_asymmetric_matches_hand_computed_zero_point()
    {
        var q = WeightCompressor.Quantize(new float[] { -1f, 0f, 1f, 3f }, 1, 4, "int8", 0, symmetric: false);
        // s = f16(4/255) = 1028/1024 · 2^-6, z = round(1/s) = 64, q = round(x/s) + z
        Assert.Equal(0.015686035f, q.Scales[0]);
        Assert.Equal((byte)64, q.Zeros![0]);
        Assert.Equal(new byte[] { 0, 64, 128, 255 }, q.Data);
        Assert.Equal(0f, WeightCompressor.Dequantize(q)[1]);   // zero is exact
    }

    [Fact]
    public void Int4_asymmetric_zero_points_are_one_per_byte_and_error_is_within_half_a_step()
    {
        var r = new Random(3);
        var x = Enumerable.Range(0, 3 * 64).Select(_ => (float)(r.NextDouble() * 3 - 1)).ToArray();
        var q = WeightCompressor.Quantize(x, 3, 64, "int4", 32, symmetric: false);
        Assert.Equal(3 * 32, q.Data.Length);
        Assert.Equal(6, q.Zeros!.Length);
        Assert.All(q.Zeros, z => Assert.InRange(z, 0, 15));
        var back = WeightCompressor.Dequantize(q);
        for (int i = 0; i < x.Length; i++)
        {
            float s = q.Scales[i / 32];
            Assert.True(Math.Abs(back[i] - x[i]) <= s * 0.51f + 1e-6f, $"value {i}: {x[i]} → {back[i]} (s {s})");
        }
        foreach (var s in q.Scales) Assert.Equal(s, (float)(Half)s);   // f16-exact scales
    }

    [Fact]
    public void Encoded_scales_are_f16_with_the_exact_quantizer_values()
    {
        var r = new Random(5);
        var x = Enumerable.Range(0, 4 * 64).Select(_ => (float)(r.NextDouble() * 2 - 1) * 1e-4f).ToArray();
        x[0] = 1e-4f;   // a group of tiny values: its scale is an f16 subnormal
        for (int i = 1; i < 32; i++) x[i] = 0;
        for (int i = 32; i < 64; i++) x[i] = 0;   // an all-zero group: scale 0
        foreach (var (scheme, sym) in new[] { ("int8", true), ("int4", true), ("int4", false), ("int8", false) })
        {
            var q = WeightCompressor.Quantize(x, 4, 64, scheme, 32, sym);
            var enc = WeightCompressor.ToEncoded("w", q);
            var scales = enc.Single(e => e.Name == "w.scales");
            Assert.Equal(DType.F16, scales.DType);
            Assert.Equal(new Shape(4, 2), scales.Shape);
            Assert.Equal(q.Scales.Length * 2, scales.Data.Length);
            for (int i = 0; i < q.Scales.Length; i++)
                Assert.Equal(q.Scales[i], (float)System.Buffers.Binary.BinaryPrimitives.ReadHalfLittleEndian(scales.Data.AsSpan(2 * i)));
            Assert.True(Half.IsSubnormal((Half)q.Scales[0]), $"{scheme}: scale {q.Scales[0]} should be subnormal");
            Assert.Equal(0f, q.Scales[1]);
        }
    }

    [Fact]
    public void Encoding_a_scale_that_is_not_f16_exact_throws_with_the_weight_name()
    {
        var q = WeightCompressor.Quantize(new float[] { 1f, -2f, 0.5f, 4f }, 1, 4, "int8", 0, symmetric: true);
        var bad = q with { Scales = [0.1f] };
        var e = Assert.Throws<ArgumentException>(() => WeightCompressor.ToEncoded("layer.w", bad));
        Assert.Contains("layer.w", e.Message);
    }

    [Fact]
    public void Constant_nonzero_group_keeps_its_value()
    {
        var q = WeightCompressor.Quantize(Enumerable.Repeat(0.75f, 32).ToArray(), 1, 32, "int4", 32, symmetric: false);
        Assert.All(WeightCompressor.Dequantize(q), v => Assert.Equal(0.75f, v, 3));
    }

    [Fact]
    public void Encoder_writes_data_scales_and_zeros_entries()
    {
        var c = new WeightCompressor(new WeightCompressionOptions { Scheme = "int4", GroupSize = 32 });
        var enc = c.Encode(Pending("l.weight", new float[4 * 64], 4, 64, WeightKind.Matrix), new float[4 * 64])!;
        Assert.Equal(3, enc.Count);
        Assert.Equal(("l.weight", DType.U8, new Shape(4, 32)), (enc[0].Name, enc[0].DType, enc[0].Shape));
        Assert.Equal(new Quantization("int4", 32, false, "l.weight.scales", "l.weight.zeros"), enc[0].Quant);
        Assert.Equal(("l.weight.scales", DType.F16, new Shape(4, 2)), (enc[1].Name, enc[1].DType, enc[1].Shape));
        Assert.Equal(("l.weight.zeros", DType.U8, new Shape(4, 2)), (enc[2].Name, enc[2].DType, enc[2].Shape));

        var sym = new WeightCompressor(new WeightCompressionOptions { Scheme = "int8", Symmetric = true });
        var e8 = sym.Encode(Pending("w", new float[2 * 5], 2, 5, WeightKind.Matrix), new float[10])!;
        Assert.Equal(2, e8.Count);
        Assert.Equal(DType.I8, e8[0].DType);
        Assert.Equal(new Shape(2, 1), e8[1].Shape);
    }

    [Fact]
    public void Int4_defaults_keep_embeddings_and_head_in_int8_and_skip_vectors_and_ignored_names()
    {
        var messages = new List<string>();
        var c = new WeightCompressor(new WeightCompressionOptions
        {
            Scheme = "int4", IgnoredScope = ["layers\\.0\\."], OutputProjections = ["lm_head.weight"],
        }, new SyncProgress(messages));
        float[] m128 = new float[2 * 128];
        Assert.Equal(new Quantization("int4", 128, false, "a.weight.scales", "a.weight.zeros"), c.Encode(Pending("a.weight", m128, 2, 128, WeightKind.Matrix), m128)![0].Quant);
        Assert.Equal(new Quantization("int8", 0, false, "emb.scales", "emb.zeros"), c.Encode(Pending("emb", m128, 2, 128, WeightKind.Embedding), m128)![0].Quant);
        Assert.Equal("int8", c.Encode(Pending("lm_head.weight", m128, 2, 128, WeightKind.Matrix), m128)![0].Quant!.Scheme);
        Assert.Null(c.Encode(Pending("model.layers.0.q.weight", m128, 2, 128, WeightKind.Matrix), m128));
        Assert.Null(c.Encode(new PendingWeight("norm", LazyTensor.FromArray(new float[4], new Shape(4), "t"), WeightKind.Vector), new float[4]));
        float[] m96 = new float[2 * 96];
        var fb = c.Encode(Pending("odd.weight", m96, 2, 96, WeightKind.Matrix), m96)!;   // 96 % 128 ≠ 0
        Assert.Equal(new Quantization("int8", 0, false, "odd.weight.scales", "odd.weight.zeros"), fb[0].Quant);
        Assert.Contains(messages, s => s.Contains("odd.weight") && s.Contains("int8"));
        Assert.Contains(messages, s => s.Contains("model.layers.0.q.weight") && s.Contains("ignored"));

        var all = new WeightCompressor(new WeightCompressionOptions { Scheme = "int4", GroupSize = 64, AllLayers = true, OutputProjections = ["lm_head.weight"] });
        Assert.Equal("int4", all.Encode(Pending("emb", m128, 2, 128, WeightKind.Embedding), m128)![0].Quant!.Scheme);
        Assert.Equal("int4", all.Encode(Pending("lm_head.weight", m128, 2, 128, WeightKind.Matrix), m128)![0].Quant!.Scheme);
    }

    [Fact]
    public void Invalid_options_name_the_problem()
    {
        Assert.Contains("multiple of 32", Assert.Throws<ArgumentException>(() => new WeightCompressor(new WeightCompressionOptions { Scheme = "int4", GroupSize = 48 })).Message);
        Assert.Contains("int8 or int4", Assert.Throws<ArgumentException>(() => new WeightCompressor(new WeightCompressionOptions { Scheme = "int2" })).Message);
        Assert.Contains("regular expression", Assert.Throws<ArgumentException>(() => new WeightCompressor(new WeightCompressionOptions { IgnoredScope = ["("] })).Message);
    }

    private sealed class SyncProgress(List<string> sink) : IProgress<string>
    {
        public void Report(string value) => sink.Add(value);
    }
}
