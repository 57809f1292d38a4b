// The one layout hook of the LLaMA family: checkpoints written for interleaved-pair RoPE (Meta's original
// llama/model.py, llama2.c, FlagAI's Aquila) get the rows of their q/k projections permuted per head into the order
// that transformers' rotate_half expects, exactly as transformers' convert_llama_weights_to_hf.py `permute` does.
// The runtime then implements one rotation (style "half") for every LLaMA source.
using Hub.Weights;

namespace Hub.Models.Llama;

/// <summary>Turns q/k projections of an interleaved-RoPE checkpoint into the Hugging Face (rotate_half) row order.</summary>
/// <remarks>
/// <para>Within one head of width d (r = d/2 pairs), interleaved RoPE rotates the pairs (x[2j], x[2j+1]) by the
/// angle p·θ_j, while Hugging Face's rotate_half rotates (y[j], y[j+r]) by the same angle p·θ_j
/// (θ_j = theta^(−2j/d) in both). Let P be the permutation with y[c·r + j] = x[2j + c] for c ∈ {0, 1}, j &lt; r.
/// P maps each interleaved pair onto the matching half pair, so rotating y = P·x with rotate_half gives exactly
/// P·(x rotated interleaved): HalfRope(P·x) = P·InterleavedRope(x).</para>
/// <para>The projections are linear, q = W_q·h, so permuting the rows of W_q (and of a q bias) by P gives P·q for
/// free; the same for W_k with its own heads. Attention only sees dot products of rotated queries and keys within a
/// head, and (P·a)·(P·b) = a·b because P is a permutation, so every score, and thus the whole model, is unchanged.
/// v and o are untouched.</para>
/// <para>In tensor terms this is transformers' <c>permute</c>:
/// <c>w.view(n_heads, d/2, 2, dim).transpose(1, 2).reshape(n_heads·d, dim)</c>, i.e. new row
/// <c>h·d + c·r + j</c> = old row <c>h·d + 2j + c</c>. Use n_heads for W_q and n_kv_heads for W_k.</para>
/// </remarks>
public static class LlamaWeightLayout
{
    /// <summary>
    /// The Hugging Face form of a q or k projection weight [heads·headDim, in] (or bias [heads·headDim]) stored in
    /// <paramref name="layout"/>: unchanged for <see cref="WeightLayout.HuggingFace"/>, row-permuted per head for
    /// <see cref="WeightLayout.InterleavedRope"/>.
    /// </summary>
    public static LazyTensor ToHuggingFace(LazyTensor w, int heads, int headDim, WeightLayout layout) => layout switch
    {
        WeightLayout.HuggingFace => w,
        WeightLayout.InterleavedRope => PermuteInterleavedToHalf(w, heads, headDim),
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "unknown weight layout"),
    };

    /// <summary>The per-head row permutation (interleaved pairs → halves) described on the class.</summary>
    public static LazyTensor PermuteInterleavedToHalf(LazyTensor w, int heads, int headDim)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"{w.Origin}: head_dim {headDim} must be even for RoPE", nameof(headDim));
        if (w.Shape.Rank is not (1 or 2) || w.Shape[0] != (long)heads * headDim)
            throw new CheckpointFormatException(w.Origin, null,
                $"shape {w.Shape} cannot hold {heads} heads of width {headDim} in its rows; check that the configuration belongs to these weights");
        long rowLen = w.Shape.Rank == 2 ? w.Shape[1] : 1;
        int half = headDim / 2;
        return w.Map("rope_permute", w.Shape, src =>
        {
            var dst = new float[src.Length];
            for (int h = 0; h < heads; h++)
                for (int c = 0; c < 2; c++)
                    for (int j = 0; j < half; j++)
                    {
                        long to = (long)h * headDim + c * half + j;
                        long from = (long)h * headDim + 2 * j + c;
                        Array.Copy(src, from * rowLen, dst, to * rowLen, rowLen);
                    }
            return dst;
        });
    }
}
