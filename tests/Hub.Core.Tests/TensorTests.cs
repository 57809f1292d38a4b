using Hub.Weights;

namespace Hub.Core.Tests;

public class TensorTests
{
    [Fact]
    public void Bf16_rounds_to_nearest_even_and_round_trips()
    {
        float[] values = [1f, -2.5f, 3.14159f, 1e-20f, 65504f, float.PositiveInfinity];
        var bytes = new byte[values.Length * 2];
        DTypeConvert.FromFloat32(values, DType.BF16, bytes);
        var back = new float[values.Length];
        DTypeConvert.ToFloat32(bytes, DType.BF16, back);
        for (int i = 0; i < values.Length; i++)
            Assert.True(Math.Abs(back[i] - values[i]) <= Math.Abs(values[i]) / 128 || float.IsInfinity(values[i]), $"{values[i]} → {back[i]}");
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to even (1.0).
        Assert.Equal(0x3F80, DTypeConvert.FloatToBFloat16(1f + 1f / 256));
        Assert.Equal(0x3F81, DTypeConvert.FloatToBFloat16(1f + 3f / 512));
    }

    [Fact]
    public void F16_conversion_is_exact_for_representable_values()
    {
        float[] values = [0f, 1f, -0.5f, 0.099975586f, 65504f];
        var bytes = new byte[values.Length * 2];
        DTypeConvert.FromFloat32(values, DType.F16, bytes);
        var back = new float[values.Length];
        DTypeConvert.ToFloat32(bytes, DType.F16, back);
        Assert.Equal(values, back);
    }

    [Fact]
    public void Lazy_transpose_and_concat_produce_expected_layout()
    {
        var a = LazyTensor.FromArray([1, 2, 3, 4, 5, 6], new Shape(2, 3), "a");
        Assert.Equal(new float[] { 1, 4, 2, 5, 3, 6 }, a.Transpose2D().ToFloat32());
        var c = LazyTensor.ConcatRows("c", a, LazyTensor.FromArray([7, 8, 9], new Shape(1, 3), "b"));
        Assert.Equal(new Shape(3, 3), c.Shape);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, c.ToFloat32());
        Assert.Equal(new float[] { 4, 5, 6 }, a.SliceRows(1, 1).ToFloat32());
        Assert.Throws<ArgumentException>(() => LazyTensor.ConcatRows("bad", a, LazyTensor.FromArray([1, 2], new Shape(1, 2), "x")));
    }

    [Fact]
    public void Shape_rejects_negative_dims_and_counts_elements()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Shape(2, -1));
        Assert.Equal(24, new Shape(2, 3, 4).ElementCount);
        Assert.Equal(1, Shape.Scalar.ElementCount);
        Assert.Equal("[2, 3]", new Shape(2, 3).ToString());
    }

    [Fact]
    public void Dtype_names_parse_like_safetensors()
    {
        foreach (var d in Enum.GetValues<DType>())
        {
            Assert.True(DTypeInfo.TryParse(d.ToSafetensorsName(), out var back));
            Assert.Equal(d, back);
        }
        Assert.False(DTypeInfo.TryParse("F8_E4M3", out _));
    }
}
