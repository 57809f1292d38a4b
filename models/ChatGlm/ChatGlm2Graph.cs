// ChatGLM2-6B / ChatGLM3-6B graph, after THUDM/chatglm2-6b and THUDM/chatglm3-6b modeling_chatglm.py
// (ChatGLMForConditionalGeneration; GLMBlock, SelfAttention, MLP, apply_rotary_pos_emb).
// - RMSNorm (or LayerNorm when rmsnorm = false), fused QKV split [all Q | all K | all V], multi-query attention
//   with multi_query_group_num K/V groups: the cache holds the groups only (Attention kv_heads = groups).
// - RoPE on the first kv_channels/2 channels of each head, interleaved pairs (x[2i], x[2i+1]), frequencies
//   base^(−2i/rot), rot = kv_channels/2. rope_ratio: ChatGLM3-32k/-128k multiply the base by it (the default here);
//   ChatGLM2-6B-32k divides positions by it instead (position interpolation) with the same config key, so that is an
//   explicit choice (ChatGlmRopeRatioMode.DividePositions), never a guess.
// - Scores use 1/sqrt(kv_channels): THUDM's divide by sqrt(hd)·layer then multiply by layer cancels (fp16 range guard).
// - SwiGLU with the gate in the FIRST half of dense_h_to_4h, final RMSNorm, untied output_layer.
// Not supported: prefix tuning (pre_seq_len), the int4/int8 quantized checkpoints (chatglm2-6b-int4: quantized
// weights in THUDM's own packing).
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.ChatGlm;

/// <summary>Builds the v2/v3 IR graph and its weight map.</summary>
public static class ChatGlm2Graph
{
    /// <summary>Builds the graph; reads tensor metadata only.</summary>
    public static ModelExport Build(ChatGlmConfig c, ITensorSource weights, ChatGlmRopeRatioMode ropeMode)
    {
        int hidden = c.HiddenSize, heads = c.NumAttentionHeads, kvHeads = c.KvHeads, hd = c.HeadDim, ffn = c.FfnSize;
        int qDim = heads * hd, kvDim = kvHeads * hd;
        var g = new GraphBuilder("chatglm");
        ChatGlmArchitecture.CommonMetadata(g, c, "linear");
        g.Metadata["rope_ratio_mode"] = ropeMode == ChatGlmRopeRatioMode.ScaleBase ? "scale_base" : "divide_positions";

        var ids = g.Input("input_ids", DType.I32, "batch", "seq");               // [B, T]
        var pos = g.Input("position_ids", DType.I32, "batch", "seq");            // [B, T]
        var mask = g.Input("attention_mask", DType.F32, "batch", "total");       // [B, past+T]
        var keep = g.Input("logits_to_keep", DType.I32, 1);                      // [1]

        var root = new WeightBinder(weights).Scope("transformer");
        var emb = g.Weight("transformer.embedding.word_embeddings.weight",
            root.Get("embedding.word_embeddings.weight", c.VocabSize, hidden), WeightKind.Embedding);
        var x = g.Op(Ops.Embedding, "embedding", new[] { ids, emb });          // [B, T, hidden]

        var rope = RopeAttrs(c, ropeMode);
        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = root.Scope($"encoder.layers.{l}");
            string p = $"layers.{l}";
            string W(string name, LazyTensor t, WeightKind kind) => g.Weight($"transformer.encoder.layers.{l}.{name}", t, kind);

            var h = Norm(g, c, w, $"transformer.encoder.layers.{l}.input_layernorm", "input_layernorm", x, $"{p}.input_layernorm");

            var att = w.Scope("self_attention");
            var (qkvW, qkvB) = ChatGlmWeights.Qkv(att, c, c.AddQkvBias);
            var qkv = g.Op(Ops.Linear, $"{p}.qkv", new[] {
                h, W("self_attention.query_key_value.weight", qkvW, WeightKind.Matrix),
                qkvB is null ? null : W("self_attention.query_key_value.bias", qkvB, WeightKind.Vector) });   // [B, T, qDim+2kvDim]
            var qkvParts = g.OpMulti(Ops.Split, $"{p}.qkv_split", new[] { qkv }, 3, new { sizes = new[] { qDim, kvDim, kvDim } });
            var q = g.Op(Ops.Rope, $"{p}.q_rope", new[] { qkvParts[0], pos }, rope(heads));     // [B, T, qDim]
            var k = g.Op(Ops.Rope, $"{p}.k_rope", new[] { qkvParts[1], pos }, rope(kvHeads));   // [B, T, kvDim]

            var sk = g.State($"past.{l}.key", DType.F32, "batch", kvHeads, "ctx", hd);
            var sv = g.State($"past.{l}.value", DType.F32, "batch", kvHeads, "ctx", hd);
            var ctx = g.Op(Ops.Attention, $"{p}.attention", new[] { q, k, qkvParts[2], mask }, new
            {
                heads, kv_heads = kvHeads, head_dim = hd, scale = (float)(1.0 / Math.Sqrt(hd)), causal = true, state_k = sk, state_v = sv,
            });                                                                                   // [B, T, qDim]
            var attnOut = g.Op(Ops.Linear, $"{p}.dense", new[] {
                ctx, W("self_attention.dense.weight", att.Get("dense.weight", hidden, qDim), WeightKind.Matrix),
                c.AddBiasLinear ? W("self_attention.dense.bias", att.Get("dense.bias", hidden), WeightKind.Vector) : null });
            x = g.Op(Ops.Add, $"{p}.attn_residual", new[] { c.ApplyResidualConnectionPostLayerNorm ? h : x, attnOut });

            var h2 = Norm(g, c, w, $"transformer.encoder.layers.{l}.post_attention_layernorm", "post_attention_layernorm", x, $"{p}.post_attention_layernorm");
            var mlp = w.Scope("mlp");
            var up = g.Op(Ops.Linear, $"{p}.dense_h_to_4h", new[] {
                h2, W("mlp.dense_h_to_4h.weight", mlp.Get("dense_h_to_4h.weight", 2L * ffn, hidden), WeightKind.Matrix),
                c.AddBiasLinear ? W("mlp.dense_h_to_4h.bias", mlp.Get("dense_h_to_4h.bias", 2L * ffn), WeightKind.Vector) : null }); // [B, T, 2·ffn] = [gate | up]
            var act = g.Op(Ops.SwiGlu, $"{p}.swiglu", new[] { up });                           // [B, T, ffn]
            var down = g.Op(Ops.Linear, $"{p}.dense_4h_to_h", new[] {
                act, W("mlp.dense_4h_to_h.weight", mlp.Get("dense_4h_to_h.weight", hidden, ffn), WeightKind.Matrix),
                c.AddBiasLinear ? W("mlp.dense_4h_to_h.bias", mlp.Get("dense_4h_to_h.bias", hidden), WeightKind.Vector) : null });
            x = g.Op(Ops.Add, $"{p}.mlp_residual", new[] { c.ApplyResidualConnectionPostLayerNorm ? h2 : x, down });
        }

        if (c.PostLayerNorm)
            x = Norm(g, c, root.Scope("encoder"), "transformer.encoder.final_layernorm", "final_layernorm", x, "final_layernorm");
        var last = g.Op(Ops.KeepLast, "keep_last", new[] { x, keep });                     // [B, T', hidden]
        var head = g.Weight("transformer.output_layer.weight", root.Get("output_layer.weight", c.VocabSize, hidden), WeightKind.Matrix);
        var logits = g.Op(Ops.Linear, "logits", new[] { last, head });                      // [B, T', vocab]
        g.Output(logits, DType.F32, "batch", "kept", c.VocabSize);
        return g.Build();
    }

    /// <summary>RoPE attributes for a tensor of <c>heads</c> heads.</summary>
    private static Func<int, object> RopeAttrs(ChatGlmConfig c, ChatGlmRopeRatioMode mode)
    {
        float theta = mode == ChatGlmRopeRatioMode.ScaleBase ? 10000f * c.RopeRatio : 10000f;
        float positionScale = mode == ChatGlmRopeRatioMode.ScaleBase ? 1f : 1f / c.RopeRatio;
        int hd = c.HeadDim;
        return heads => new { heads, head_dim = hd, rotary_dims = hd / 2, style = "interleaved", theta, position_scale = positionScale };
    }

    /// <summary>RMSNorm, or LayerNorm with bias when the config says rmsnorm = false.</summary>
    private static string Norm(GraphBuilder g, ChatGlmConfig c, WeightBinder scope, string irPrefix, string name, string x, string node)
    {
        int hidden = c.HiddenSize;
        var gamma = g.Weight($"{irPrefix}.weight", scope.Get($"{name}.weight", hidden), WeightKind.Vector);
        if (c.RmsNorm) return g.Op(Ops.RMSNorm, node, new[] { x, gamma }, new { eps = c.LayerNormEpsilon });
        var beta = g.Weight($"{irPrefix}.bias", scope.Get($"{name}.bias", hidden), WeightKind.Vector);
        return g.Op(Ops.LayerNorm, node, new[] { x, gamma, beta }, new { eps = c.LayerNormEpsilon });
    }
}
