// Elementwise activations. GELU follows Hendrycks & Gimpel (exact erf form, PyTorch's gelu(approximate='none')) and
// GPT-2's tanh approximation (gelu_new). erf: the vector path evaluates Eigen's rational minimax approximation
// (generic_fast_erf_float, |x| ≤ 4) in double precision, so the only error left is the fit's (≈1e-8) plus the final
// rounding to float; the scalar reference evaluates erf in double from its Maclaurin series / erfc continued fraction.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hub.Runtime.Kernels;

/// <summary>Elementwise activation kernels (fast SIMD path and scalar reference twins).</summary>
public static class Activations
{
    private const double Sqrt1_2 = 0.70710678118654752440;
    private const float GeluTanhC = 0.7978845608028654f; // sqrt(2/pi)

    /// <summary>dst = x·sigmoid(x) (SiLU / swish).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Silu(ReadOnlySpan<float> x, Span<float> dst)
    {
        CheckLengths(x, dst);
        fixed (float* xp = x, dp = dst) VecMath.SiluMul(xp, null, dp, x.Length);
    }

    /// <summary>Scalar twin of <see cref="Silu"/>.</summary>
    public static void SiluReference(ReadOnlySpan<float> x, Span<float> dst)
    {
        for (int i = 0; i < x.Length; i++) dst[i] = x[i] / (1f + MathF.Exp(-x[i]));
    }

    /// <summary>dst[i] = silu(x[row, i]) · x[row, F + i] for rows of 2F values (gate first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void SwiGlu(ReadOnlySpan<float> x, Span<float> dst, int f)
    {
        int rows = f == 0 ? 0 : dst.Length / f;
        fixed (float* xp = x, dp = dst)
            for (int r = 0; r < rows; r++)
                VecMath.SiluMul(xp + (long)r * 2 * f, xp + (long)r * 2 * f + f, dp + (long)r * f, f);
    }

    /// <summary>Scalar twin of <see cref="SwiGlu"/>.</summary>
    public static void SwiGluReference(ReadOnlySpan<float> x, Span<float> dst, int f)
    {
        int rows = f == 0 ? 0 : dst.Length / f;
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < f; i++)
            {
                float g = x[r * 2 * f + i];
                dst[r * f + i] = g / (1f + MathF.Exp(-g)) * x[r * 2 * f + f + i];
            }
    }

    /// <summary>Exact GELU, 0.5·x·(1+erf(x/√2)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GeluErf(ReadOnlySpan<float> x, Span<float> dst)
    {
        CheckLengths(x, dst);
        int i = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= 8)
        {
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float ds = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(dst);
            for (; i <= x.Length - 8; i += 8)
                GeluF(Vector256.LoadUnsafe(ref xs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        }
        for (; i < x.Length; i++) dst[i] = (float)GeluScalarD(x[i]);
    }

    /// <summary>Scalar twin of <see cref="GeluErf"/> (erf in double from series / continued fraction).</summary>
    public static void GeluErfReference(ReadOnlySpan<float> x, Span<float> dst)
    {
        for (int i = 0; i < x.Length; i++) dst[i] = (float)(0.5 * x[i] * (1.0 + ErfReference(x[i] * Sqrt1_2)));
    }

    /// <summary>GELU tanh approximation (gelu_new / gelu_pytorch_tanh).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void GeluTanh(ReadOnlySpan<float> x, Span<float> dst)
    {
        CheckLengths(x, dst);
        fixed (float* xp = x, dp = dst) VecMath.GeluTanh(xp, dp, x.Length);
    }

    /// <summary>GELU tanh through TensorPrimitives.Tanh (kept as a cross-check of <see cref="GeluTanh"/>).</summary>
    public static void GeluTanhPrimitives(ReadOnlySpan<float> x, Span<float> dst)
    {
        CheckLengths(x, dst);
        // dst = tanh(c·(x + 0.044715x³)), then 0.5·x·(1 + dst); dst may alias x, so go in blocks through a stack buffer.
        Span<float> t = stackalloc float[256];
        for (int i = 0; i < x.Length; i += 256)
        {
            int n = Math.Min(256, x.Length - i);
            var xs = x.Slice(i, n);
            var ts = t[..n];
            TensorPrimitives.Multiply(xs, xs, ts);
            TensorPrimitives.Multiply(ts, 0.044715f, ts);
            TensorPrimitives.Add(ts, 1f, ts);
            TensorPrimitives.Multiply(ts, xs, ts);
            TensorPrimitives.Multiply(ts, GeluTanhC, ts);
            TensorPrimitives.Tanh(ts, ts);
            TensorPrimitives.Add(ts, 1f, ts);
            TensorPrimitives.Multiply(ts, xs, ts);
            TensorPrimitives.Multiply(ts, 0.5f, dst.Slice(i, n));
        }
    }

    /// <summary>Scalar twin of <see cref="GeluTanh"/>.</summary>
    public static void GeluTanhReference(ReadOnlySpan<float> x, Span<float> dst)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            dst[i] = 0.5f * v * (1f + MathF.Tanh(GeluTanhC * (v + 0.044715f * v * v * v)));
        }
    }

    /// <summary>erf in float via the double-evaluated rational approximation (the fast path's function).</summary>
    public static float Erf(float x) => (float)ErfRationalD(x);

    /// <summary>erf in double: Maclaurin series for |x| &lt; 3, erfc continued fraction beyond (accurate to ~1e-15).</summary>
    public static double ErfReference(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        double r;
        if (ax < 3.0)
        {
            // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            r = sum * 1.1283791670955126;
        }
        else if (ax > 27) r = 1.0;
        else
        {
            // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) evaluated bottom-up.
            double f = ax;
            for (int k = 60; k >= 1; k--) f = ax + k * 0.5 / f;
            r = 1.0 - Math.Exp(-ax * ax) / (f * 1.7724538509055160);
        }
        return x < 0 ? -r : r;
    }

    private static double GeluScalarD(float x) => 0.5 * x * (1.0 + ErfRationalD(x * Sqrt1_2));

    // Eigen's generic_fast_erf_float coefficients: erf(x) ≈ x·P(x²)/Q(x²) on [-4, 4], ±1 outside.
    private const double A1 = -1.60960333262415e-02, A3 = -2.95459980854025e-03, A5 = -7.34990630326855e-04,
        A7 = -5.69250639462346e-05, A9 = -2.10102402082508e-06, A11 = 2.77068142495902e-08, A13 = -2.72614225801306e-10;
    private const double B0 = -1.42647390514189e-02, B2 = -7.37332916720468e-03, B4 = -1.68282697438203e-03,
        B6 = -2.13374055278905e-04, B8 = -1.45660718464996e-05;

    // Maclaurin coefficients of erf(x)/x in x², c_n = (−1)ⁿ·2/√π / (n!·(2n+1)); 14 terms reach 1e-16 for |x| < 1,
    // where the rational fit's relative error (≈6e-8 near 0.03) would exceed the 1e-7 budget after rounding.
    private static readonly double[] Taylor = BuildTaylor();

    private static double[] BuildTaylor()
    {
        var c = new double[14];
        double fact = 1;
        for (int n = 0; n < c.Length; n++)
        {
            if (n > 0) fact *= n;
            c[n] = (n % 2 == 0 ? 1 : -1) * 1.1283791670955126 / (fact * (2 * n + 1));
        }
        return c;
    }

    private static double ErfRationalD(double x)
    {
        if (Math.Abs(x) < 1.0)
        {
            double z2 = x * x, t = Taylor[^1];
            for (int i = Taylor.Length - 2; i >= 0; i--) t = t * z2 + Taylor[i];
            return x * t;
        }
        x = Math.Clamp(x, -4.0, 4.0);
        double x2 = x * x;
        double p = A13;
        p = p * x2 + A11; p = p * x2 + A9; p = p * x2 + A7; p = p * x2 + A5; p = p * x2 + A3; p = p * x2 + A1;
        double q = B8;
        q = q * x2 + B6; q = q * x2 + B4; q = q * x2 + B2; q = q * x2 + B0;
        return x * p / q;
    }

    // The same rational erf in float32 (Eigen's generic_fast_erf_float, a few ulp): about 8× cheaper than the double
    // path and well inside float rounding of 0.5·x·(1 + erf) (the erf error is absolute ≤ 1e-7).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluF(Vector256<float> x)
    {
        var z = Vector256.Min(Vector256.Max(x * Vector256.Create((float)Sqrt1_2), Vector256.Create(-4f)), Vector256.Create(4f));
        var x2 = z * z;
        var p = Vector256.Create((float)A13);
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create((float)A11)); p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create((float)A9));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create((float)A7)); p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create((float)A5));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create((float)A3)); p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create((float)A1));
        var q = Vector256.Create((float)B8);
        q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create((float)B6)); q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create((float)B4));
        q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create((float)B2)); q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create((float)B0));
        var erf = z * p / q;
        var h = Vector256.Create(0.5f) * x;
        return Vector256.FusedMultiplyAdd(h, erf, h);
    }


    private static void CheckLengths(ReadOnlySpan<float> x, Span<float> dst)
    {
        if (x.Length != dst.Length) throw new ArgumentException("source and destination lengths differ", nameof(dst));
    }
}
