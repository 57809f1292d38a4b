// The one layout hook of the ChatGLM family (llama.cpp's modify_tensors): the fused query_key_value projection.
// ChatGLM2/3 with multi_query_attention store it as [all Q | all K | all V] (THUDM modeling_chatglm.py,
// SelfAttention.forward: mixed_x_layer.split([np*hn, g*hn, g*hn])); ChatGLM-6B (v1) and v2 without MQA store it per
// head, [q_h | k_h | v_h] for every head h (view(..., np, 3*hn) then split). Per-head rows are reordered here into the
// grouped layout so that every variant's graph is the same Linear + Split, and the runtime never sees the difference.
using Hub.Weights;

namespace Hub.Models.ChatGlm;

/// <summary>Binds and checks ChatGLM's fused QKV tensors; reorders per-head layouts into [all Q | all K | all V].</summary>
public static class ChatGlmWeights
{
    /// <summary>
    /// The fused QKV weight ([qRows + 2·kvRows, hidden]) and its bias (when <paramref name="withBias"/>) in
    /// [all Q | all K | all V] order. A tensor whose size disagrees with heads / groups / kv_channels is a
    /// <see cref="CheckpointFormatException"/> naming the file, the tensor and the shape the config implies.
    /// </summary>
    /// <param name="w">Binder scoped at the attention module (…<c>.self_attention</c> or …<c>.attention</c>).</param>
    /// <param name="c">The config.</param>
    /// <param name="withBias">True when the checkpoint must hold <c>query_key_value.bias</c>.</param>
    public static (LazyTensor Weight, LazyTensor? Bias) Qkv(WeightBinder w, ChatGlmConfig c, bool withBias)
    {
        int heads = c.NumAttentionHeads, kv = c.KvHeads, hd = c.HeadDim;
        long rows = (long)(heads + 2 * kv) * hd;
        bool perHead = c.Variant == ChatGlmVariant.V1 || !c.MultiQueryAttention;
        string implied = perHead
            ? $"{heads} heads × 3 × {hd} (per head [q|k|v])"
            : $"{heads} heads × {hd} + 2 × {kv} groups × {hd} (num_attention_heads·kv_channels + 2·multi_query_group_num·kv_channels)";

        var wInfo = w.Info("query_key_value.weight");
        if (wInfo.Shape.Rank != 2 || wInfo.Shape[0] != rows || wInfo.Shape[1] != c.HiddenSize)
            throw new CheckpointFormatException(wInfo.FilePath, wInfo.Name,
                $"shape {wInfo.Shape} disagrees with the config: {implied} = {rows} rows of hidden_size {c.HiddenSize}, i.e. [{rows}, {c.HiddenSize}]; " +
                "check num_attention_heads, multi_query_group_num and kv_channels in config.json");
        var weight = w.Get("query_key_value.weight");

        LazyTensor? bias = null;
        if (withBias)
        {
            var bInfo = w.Info("query_key_value.bias");
            if (bInfo.Shape.Rank != 1 || bInfo.Shape[0] != rows)
                throw new CheckpointFormatException(bInfo.FilePath, bInfo.Name,
                    $"shape {bInfo.Shape} disagrees with the config: {implied} = [{rows}]; check num_attention_heads, multi_query_group_num and kv_channels");
            bias = w.Get("query_key_value.bias");
        }

        if (perHead)
        {
            weight = GroupPerHeadRows(weight, heads, hd);
            if (bias is not null) bias = GroupPerHeadRows(bias, heads, hd);
        }
        return (weight, bias);
    }

    /// <summary>
    /// Reorders rows laid out per head as [q_h | k_h | v_h] (each <paramref name="headDim"/> rows, h = 0..heads−1)
    /// into [q_0..q_{H−1} | k_0..k_{H−1} | v_0..v_{H−1}]: new row p·H·hd + h·hd + j = old row h·3·hd + p·hd + j.
    /// Works for a weight [3·H·hd, K] and a bias [3·H·hd].
    /// </summary>
    public static LazyTensor GroupPerHeadRows(LazyTensor t, int heads, int headDim)
    {
        long rows = t.Shape[0];
        if (rows != 3L * heads * headDim)
            throw new ArgumentException($"{t.Origin}: {rows} rows, expected 3·{heads}·{headDim}", nameof(t));
        long rowLen = t.Shape.ElementCount / rows;
        return t.Map("qkv_per_head_to_grouped", t.Shape, src =>
        {
            var dst = new float[src.Length];
            for (int h = 0; h < heads; h++)
                for (int p = 0; p < 3; p++)
                {
                    long from = ((long)h * 3 * headDim + (long)p * headDim) * rowLen;
                    long to = ((long)p * heads * headDim + (long)h * headDim) * rowLen;
                    Array.Copy(src, from, dst, to, headDim * rowLen);
                }
            return dst;
        });
    }
}
