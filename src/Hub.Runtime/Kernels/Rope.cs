// Rotary position embedding (Su et al. 2021, RoFormer). Two pairings: "half" rotates (i, i + r/2) as transformers'
// rotate_half (GPT-NeoX, HF LLaMA); "interleaved" rotates (2i, 2i+1) as Meta's LLaMA, llama2.c and ChatGLM.
// Frequencies follow transformers' modeling_rope_utils: default, linear, dynamic (NTK) and llama3.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hub.Runtime.Kernels;

/// <summary>RoPE kernels: inverse frequencies and the rotation of one position across all heads.</summary>
public static unsafe class RopeKernels
{
    /// <summary>inv_freq[i] = theta^(−2i/r), i &lt; r/2, as float32 (transformers' default rope init).</summary>
    public static void InverseFrequencies(float theta, int rotaryDims, Span<float> invFreq)
    {
        for (int i = 0; i < rotaryDims / 2; i++)
            invFreq[i] = (float)(1.0 / Math.Pow(theta, (double)(2 * i) / rotaryDims));
    }

    /// <summary>Applies transformers' _compute_llama3_parameters smoothing to <paramref name="invFreq"/> in place.</summary>
    public static void Llama3Scale(Span<float> invFreq, float factor, float lowFreqFactor, float highFreqFactor, float originalMax)
    {
        double lowWavelen = originalMax / lowFreqFactor, highWavelen = originalMax / highFreqFactor;
        for (int i = 0; i < invFreq.Length; i++)
        {
            double f = invFreq[i];
            double wavelen = 2 * Math.PI / f;
            if (wavelen < highWavelen) continue;                    // high frequency: unchanged
            if (wavelen > lowWavelen) { invFreq[i] = (float)(f / factor); continue; } // low frequency: divided
            double smooth = (originalMax / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
            invFreq[i] = (float)((1 - smooth) * f / factor + smooth * f);
        }
    }

    /// <summary>
    /// Rotates one position's <paramref name="heads"/> heads (stride <paramref name="headDim"/>) of <paramref name="x"/>
    /// into <paramref name="dst"/> (may alias): channels [offset, offset + rotaryDims) of each head, by angle
    /// <paramref name="position"/>·invFreq[i]. Other channels are copied.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RotatePosition(float* x, float* dst, int heads, int headDim, int rotaryDims, int offset, bool interleaved,
        float position, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin)
    {
        Angles(position, invFreq[..(rotaryDims / 2)], cos, sin);
        Rotate(x, dst, heads, headDim, rotaryDims, offset, interleaved, cos, sin);
    }

    /// <summary>cos and sin of <paramref name="position"/>·invFreq[i] for every i of <paramref name="invFreq"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Angles(float position, ReadOnlySpan<float> invFreq, Span<float> cos, Span<float> sin)
    {
        for (int i = 0; i < invFreq.Length; i++)
        {
            float ang = position * invFreq[i];
            cos[i] = MathF.Cos(ang);
            sin[i] = MathF.Sin(ang);
        }
    }

    /// <summary>
    /// The rotation of <see cref="RotatePosition"/> with its angles' cos/sin already computed (rotaryDims / 2 each), so
    /// the ops of one step that share a position and frequencies (q and k of every layer) compute them once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rotate(float* x, float* dst, int heads, int headDim, int rotaryDims, int offset, bool interleaved,
        ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = rotaryDims / 2;
        fixed (float* cp = cos, sp = sin)
            for (int h = 0; h < heads; h++)
            {
                float* xs = x + h * headDim;
                float* ds = dst + h * headDim;
                if (xs != ds)
                {
                    for (int c = 0; c < offset; c++) ds[c] = xs[c];
                    for (int c = offset + rotaryDims; c < headDim; c++) ds[c] = xs[c];
                }
                float* xr = xs + offset, dr = ds + offset;
                if (interleaved)
                    for (int i = 0; i < half; i++)
                    {
                        float a = xr[2 * i], b = xr[2 * i + 1];
                        dr[2 * i] = a * cp[i] - b * sp[i];
                        dr[2 * i + 1] = b * cp[i] + a * sp[i];
                    }
                else
                {
                    int i = 0;
                    if (Vector256.IsHardwareAccelerated)
                        // The same multiplies and adds as the scalar loop (no FMA contraction): identical results.
                        for (; i <= half - 8; i += 8)
                        {
                            var a = Vector256.Load(xr + i); var b = Vector256.Load(xr + i + half);
                            var c = Vector256.Load(cp + i); var s = Vector256.Load(sp + i);
                            Vector256.Store(a * c - b * s, dr + i);
                            Vector256.Store(b * c + a * s, dr + i + half);
                        }
                    // Small heads (stories260K: head_dim 8, half 4) and the tails of larger ones: four pairs at a time.
                    if (Vector128.IsHardwareAccelerated)
                        for (; i <= half - 4; i += 4)
                        {
                            var a = Vector128.Load(xr + i); var b = Vector128.Load(xr + i + half);
                            var c = Vector128.Load(cp + i); var s = Vector128.Load(sp + i);
                            Vector128.Store(a * c - b * s, dr + i);
                            Vector128.Store(b * c + a * s, dr + i + half);
                        }
                    for (; i < half; i++)
                    {
                        float a = xr[i], b = xr[i + half];
                        dr[i] = a * cp[i] - b * sp[i];
                        dr[i + half] = b * cp[i] + a * sp[i];
                    }
                }
            }
    }
}
