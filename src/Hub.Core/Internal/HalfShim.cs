namespace System.Numerics.Tensors;

// Hub.Core has no package dependencies, so it carries its own scalar half conversions;
// Hub.Runtime uses TensorPrimitives' vectorized ones on the hot path.
internal static class TensorPrimitivesShim
{
    public static void HalfToSingle(ReadOnlySpan<Half> src, Span<float> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = (float)src[i];
    }

    public static void SingleToHalf(ReadOnlySpan<float> src, Span<Half> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = (Half)src[i];
    }
}
