// LayerNorm (Ba et al. 2016; biased variance, as torch.nn.LayerNorm) and RMSNorm (Zhang & Sennrich 2019; as
// transformers' LlamaRMSNorm: x / sqrt(mean(x²) + eps) · γ, in float32). Statistics are accumulated in double
// so a long row (hidden 8192) loses no precision relative to PyTorch's float32 Welford.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Hub.Runtime.Kernels;

/// <summary>Row normalizations over the last axis.</summary>
public static class Norms
{
    /// <summary>LayerNorm over rows of <paramref name="d"/> values; <paramref name="beta"/> may be empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> dst, int d, float eps)
    {
        int rows = d == 0 ? 0 : x.Length / d;
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * d, d);
            var dr = dst.Slice(r * d, d);
            double mean = SumD(xr) / d;
            double var = SumSqDiffD(xr, (float)mean) / d;
            float inv = (float)(1.0 / Math.Sqrt(var + eps));
            unsafe
            {
                fixed (float* xp = xr, dp = dr, gp = gamma, bp = beta)
                    VecMath.NormApply(xp, (float)mean, inv, gp, beta.IsEmpty ? null : bp, dp, d);
            }
        }
    }

    /// <summary>Scalar twin of <see cref="LayerNorm"/>.</summary>
    public static void LayerNormReference(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> dst, int d, float eps)
    {
        int rows = d == 0 ? 0 : x.Length / d;
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < d; i++) mean += x[r * d + i];
            mean /= d;
            for (int i = 0; i < d; i++) { double t = x[r * d + i] - mean; var += t * t; }
            var /= d;
            double inv = 1.0 / Math.Sqrt(var + eps);
            for (int i = 0; i < d; i++)
                dst[r * d + i] = (float)((x[r * d + i] - mean) * inv * gamma[i] + (beta.IsEmpty ? 0 : beta[i]));
        }
    }

    /// <summary>RMSNorm over rows of <paramref name="d"/> values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, Span<float> dst, int d, float eps)
    {
        int rows = d == 0 ? 0 : x.Length / d;
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * d, d);
            var dr = dst.Slice(r * d, d);
            double ms = SumSqDiffD(xr, 0f) / d;
            float inv = (float)(1.0 / Math.Sqrt(ms + eps));
            unsafe
            {
                fixed (float* xp = xr, dp = dr, gp = gamma)
                    VecMath.NormApply(xp, 0f, inv, gp, null, dp, d);
            }
        }
    }

    /// <summary>Scalar twin of <see cref="RmsNorm"/>.</summary>
    public static void RmsNormReference(ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, Span<float> dst, int d, float eps)
    {
        int rows = d == 0 ? 0 : x.Length / d;
        for (int r = 0; r < rows; r++)
        {
            double ms = 0;
            for (int i = 0; i < d; i++) ms += (double)x[r * d + i] * x[r * d + i];
            double inv = 1.0 / Math.Sqrt(ms / d + eps);
            for (int i = 0; i < d; i++) dst[r * d + i] = (float)(x[r * d + i] * inv) * gamma[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double SumD(ReadOnlySpan<float> x)
    {
        int i = 0;
        double s = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= 8)
        {
            ref float p = ref MemoryMarshal.GetReference(x);
            var acc0 = Vector256<double>.Zero; var acc1 = Vector256<double>.Zero;
            for (; i <= x.Length - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref p, (nuint)i));
                acc0 += lo; acc1 += hi;
            }
            s = Vector256.Sum(acc0 + acc1);
        }
        for (; i < x.Length; i++) s += x[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double SumSqDiffD(ReadOnlySpan<float> x, float mean)
    {
        int i = 0;
        double s = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= 8)
        {
            ref float p = ref MemoryMarshal.GetReference(x);
            var m = Vector256.Create((double)mean);
            var acc0 = Vector256<double>.Zero; var acc1 = Vector256<double>.Zero;
            for (; i <= x.Length - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref p, (nuint)i));
                lo -= m; hi -= m;
                acc0 += lo * lo; acc1 += hi * hi;
            }
            s = Vector256.Sum(acc0 + acc1);
        }
        for (; i < x.Length; i++) { double t = x[i] - (double)mean; s += t * t; }
        return s;
    }
}
