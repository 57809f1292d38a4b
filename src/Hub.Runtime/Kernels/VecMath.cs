// Hot elementwise loops written out with Vector256 and marked AggressiveOptimization: they run fully optimized from
// the first call, so the first prompt of a process does not pay tier-0 generic code (TensorPrimitives' generic
// operators are 10–50× slower before tiering up). exp is Cephes' expf (range reduction by ln 2 split in two
// constants, e^r ≈ 1 + r + r²·p(r) with p of degree 5; ≈1 ulp on [-87, 88]) evaluated with FMAs; it is the one
// vector exp of the runtime (softmax, attention, SiLU, GELU, tanh). The scalar remainder uses MathF.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>Vectorized elementwise primitives used by the executor (Vector256 with a scalar remainder/fallback).</summary>
public static unsafe class VecMath
{
    private const MethodImplOptions Hot = MethodImplOptions.AggressiveOptimization;

    /// <summary>
    /// e^x per lane (Cephes expf), inputs clamped to [-87.3, 88.3] (so x below −87.3 gives ≈ 1e-38, not 0; callers
    /// that need exact zeros for masked scores select them). Relative error ≈ 1e-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.3f)), Vector256.Create(88.3f)); // n ≤ 127 keeps 2ⁿ a normal float
        // n = round(x·log2 e) by the 1.5·2²³ trick: t's low mantissa bits hold n, so 2ⁿ is (bits(t) + 127) << 23.
        var magic = Vector256.Create(12582912f);
        var t = Madd(x, Vector256.Create(1.44269504088896341f), magic);
        var n = t - magic;
        var r = Madd(n, Vector256.Create(-0.693359375f), x);
        r = Madd(n, Vector256.Create(2.12194440e-4f), r);
        var p = Madd(Vector256.Create(1.9875691500E-4f), r, Vector256.Create(1.3981999507E-3f));
        p = Madd(p, r, Vector256.Create(8.3334519073E-3f));
        p = Madd(p, r, Vector256.Create(4.1665795894E-2f));
        p = Madd(p, r, Vector256.Create(1.6666665459E-1f));
        p = Madd(p, r, Vector256.Create(5.0000001201E-1f));
        var y = Madd(p, r * r, r) + Vector256<float>.One;
        var pow2 = (t.AsInt32() + Vector256.Create(127)) << 23;
        return y * pow2.AsSingle();
    }

    // a·b + c, fused where the CPU has FMA (one rounding: the range reduction above stays exact to ≈ 1 ulp).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Madd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : a * b + c;

    /// <summary>dst = a + b.</summary>
    [MethodImpl(Hot)]
    public static void Add(float* a, float* b, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) (Vector256.Load(a + i) + Vector256.Load(b + i)).Store(dst + i);
        for (; i < n; i++) dst[i] = a[i] + b[i];
    }

    /// <summary>dst = a · b.</summary>
    [MethodImpl(Hot)]
    public static void Mul(float* a, float* b, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) (Vector256.Load(a + i) * Vector256.Load(b + i)).Store(dst + i);
        for (; i < n; i++) dst[i] = a[i] * b[i];
    }

    /// <summary>dst = x·alpha + beta.</summary>
    [MethodImpl(Hot)]
    public static void ScaleShift(float* x, float alpha, float beta, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Create(alpha); var b = Vector256.Create(beta);
            for (; i <= n - 8; i += 8) (Vector256.Load(x + i) * a + b).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = x[i] * alpha + beta;
    }

    /// <summary>dst = (x − shift)·scale·gamma (+ beta when not null): the apply step of LayerNorm/RMSNorm.</summary>
    [MethodImpl(Hot)]
    public static void NormApply(float* x, float shift, float scale, float* gamma, float* beta, float* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var sh = Vector256.Create(shift); var sc = Vector256.Create(scale);
            if (beta != null)
                for (; i <= n - 8; i += 8) (((Vector256.Load(x + i) - sh) * sc) * Vector256.Load(gamma + i) + Vector256.Load(beta + i)).Store(dst + i);
            else
                for (; i <= n - 8; i += 8) (((Vector256.Load(x + i) - sh) * sc) * Vector256.Load(gamma + i)).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = (x[i] - shift) * scale * gamma[i] + (beta != null ? beta[i] : 0f);
    }

    /// <summary>dst = sigmoid(x).</summary>
    [MethodImpl(Hot)]
    public static void Sigmoid(float* x, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
                (Vector256<float>.One / (Vector256<float>.One + Exp(-Vector256.Load(x + i)))).Store(dst + i);
        for (; i < n; i++) dst[i] = 1f / (1f + MathF.Exp(-x[i]));
    }

    /// <summary>dst = x·sigmoid(x) · (up when not null): SiLU, or SwiGLU's gate times up.</summary>
    [MethodImpl(Hot)]
    public static void SiluMul(float* x, float* up, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.Load(x + i);
                var s = v / (Vector256<float>.One + Exp(-v));
                if (up != null) s *= Vector256.Load(up + i);
                s.Store(dst + i);
            }
        for (; i < n; i++)
        {
            float s = x[i] / (1f + MathF.Exp(-x[i]));
            dst[i] = up != null ? s * up[i] : s;
        }
    }

    /// <summary>dst = tanh(x) as sign(x)·(1 − e^(−2|x|))/(1 + e^(−2|x|)) (absolute error ≈ 1e-7).</summary>
    [MethodImpl(Hot)]
    public static void Tanh(float* x, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.Load(x + i);
                var t = Exp(Vector256.Create(-2f) * Vector256.Abs(v));
                var r = (Vector256<float>.One - t) / (Vector256<float>.One + t);
                Vector256.CopySign(r, v).Store(dst + i);
            }
        for (; i < n; i++) dst[i] = MathF.Tanh(x[i]);
    }

    /// <summary>dst = max(x, 0).</summary>
    [MethodImpl(Hot)]
    public static void Relu(float* x, float* dst, long n)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) Vector256.Max(Vector256.Load(x + i), Vector256<float>.Zero).Store(dst + i);
        for (; i < n; i++) dst[i] = MathF.Max(x[i], 0f);
    }

    /// <summary>GELU tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715x³))).</summary>
    [MethodImpl(Hot)]
    public static void GeluTanh(float* x, float* dst, long n)
    {
        const float c = 0.7978845608028654f;
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.Load(x + i);
                var u = Vector256.Create(c) * (v + Vector256.Create(0.044715f) * v * v * v);
                // 1 + tanh(u) = 2 / (1 + e^(−2u))
                var onePlusTanh = Vector256.Create(2f) / (Vector256<float>.One + Exp(Vector256.Create(-2f) * u));
                (Vector256.Create(0.5f) * v * onePlusTanh).Store(dst + i);
            }
        for (; i < n; i++)
        {
            float v = x[i];
            dst[i] = 0.5f * v * (1f + MathF.Tanh(c * (v + 0.044715f * v * v * v)));
        }
    }

    /// <summary>Softmax of one row of n values (max-subtracted).</summary>
    [MethodImpl(Hot)]
    public static void SoftmaxRow(float* x, float* dst, int n)
    {
        if (n == 0) return;
        int i = 0;
        float max = float.NegativeInfinity;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var m = Vector256.Create(float.NegativeInfinity);
            for (; i <= n - 8; i += 8) m = Vector256.Max(m, Vector256.Load(x + i));
            for (int l = 0; l < 8; l++) max = MathF.Max(max, m.GetElement(l));
        }
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        float sum = 0;
        i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var mv = Vector256.Create(max);
            var s = Vector256<float>.Zero;
            for (; i <= n - 8; i += 8)
            {
                var e = Exp(Vector256.Load(x + i) - mv);
                e.Store(dst + i);
                s += e;
            }
            sum = Vector256.Sum(s);
        }
        for (; i < n; i++) { float e = MathF.Exp(x[i] - max); dst[i] = e; sum += e; }
        float inv = 1f / sum;
        i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var iv = Vector256.Create(inv);
            for (; i <= n - 8; i += 8) (Vector256.Load(dst + i) * iv).Store(dst + i);
        }
        for (; i < n; i++) dst[i] *= inv;
    }
}
