// ChatGLM-6B (v1) graph, after THUDM/chatglm-6b modeling_chatglm.py (GLMBlock, SelfAttention.attention_fn,
// RotaryEmbedding, apply_rotary_pos_emb_index, GLU, gelu).
// - LayerNorm with bias; every Linear has a bias except lm_head.
// - Fused QKV stored per head [q_h | k_h | v_h]; ChatGlmWeights reorders the rows into [all Q | all K | all V] at
//   export so the graph is the same Linear + Split as v2/v3.
// - 2D RoPE: each head's channels split in halves; the first half rotates with position_ids[:, 0] (position), the
//   second with position_ids[:, 1] (block position), each rotate-half ("half" style) over hd/2 channels with
//   hd/4 frequencies 10000^(−2i/(hd/2)). THUDM builds inv_freq and then calls .half() on it, so even a float32 run
//   uses float16-rounded frequencies: the Rope ops say freq_dtype = "f16". The checkpoint's inv_freq is not read.
// - Scores: THUDM divides q by sqrt(hd)·(layer+1), fills masked scores with −10000 and multiplies by (layer+1) in
//   float32. The factors cancel, and −10000·(layer+1) below the row maximum is exp() = 0 in float32 because every query
//   sees at least itself, so plain 1/sqrt(hd) scaling with −inf masking gives the same probabilities.
// - Mask: keys before <sop> (the context) are visible to every query, the rest is causal (Attention
//   prefix_bidirectional with a per-row prefix length input). Positions come from the host (ChatGlm1Positions).
// - Left-padded batches, as THUDM's v1 tokenizer pads them (ChatGLMTokenizer._pad): each row's positions and mask are
//   built on the unpadded row, then padded on the left (positions with 0, the mask with "masked" rows and columns), and
//   generation appends visible keys. So a padded row attends exactly as it would alone: the graph takes attention_mask
//   [B, past+T] (1 keep, 0 pad) next to the prefix lengths, which count from the start of the padded row.
// - Residuals: x = LN(x)·alpha + f(LN(x)) with alpha = sqrt(2·28): THUDM constructs GLMBlock without num_layers, so
//   its default 28 applies whatever the config says.
// - MLP: dense_4h_to_h(gelu_tanh(dense_h_to_4h(x))).
// Not supported: position_encoding_2d = false, THUDM's int4/int8 packed checkpoints.
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.ChatGlm;

/// <summary>Builds the v1 (ChatGLM-6B) IR graph and its weight map.</summary>
public static class ChatGlm1Graph
{
    /// <summary>The residual scale: sqrt(2 · 28), THUDM's GLMBlock default num_layers, independent of the config.</summary>
    public static readonly float Alpha = (float)Math.Sqrt(2 * 28);

    /// <summary>Name of the [batch] I32 input holding each row's bidirectional prefix length (index of &lt;sop&gt;).</summary>
    public const string PrefixLengthInput = "prefix_length";

    /// <summary>Name of the [batch, past+seq] F32 padding mask input (1 keep, 0 left padding); graphs exported before
    /// left-padded batches were supported lack it.</summary>
    public const string AttentionMaskInput = "attention_mask";

    /// <summary>Builds the graph; reads tensor metadata only.</summary>
    public static ModelExport Build(ChatGlmConfig c, ITensorSource weights)
    {
        int hidden = c.HiddenSize, heads = c.NumAttentionHeads, hd = c.HeadDim, ffn = c.FfnSize, vocab = c.VocabSize;
        int qDim = heads * hd;
        var g = new GraphBuilder("chatglm");
        ChatGlmArchitecture.CommonMetadata(g, c, "chatglm1");
        g.Metadata["mask_token_id"] = c.MaskTokenId!.Value;
        g.Metadata["gmask_token_id"] = c.GMaskTokenId!.Value;
        g.Metadata["prefix_input"] = PrefixLengthInput;

        var ids = g.Input("input_ids", DType.I32, "batch", "seq");                  // [B, T]
        var pos = g.Input("position_ids", DType.I32, "batch", 2, "seq");            // [B, 2, T]: position, block position
        var prefix = g.Input(PrefixLengthInput, DType.I32, "batch");                // [B]
        var mask = g.Input(AttentionMaskInput, DType.F32, "batch", "total");        // [B, past+T]: 0 for left padding
        var keep = g.Input("logits_to_keep", DType.I32, 1);                         // [1]

        var root = new WeightBinder(weights).Scope("transformer");
        var emb = g.Weight("transformer.word_embeddings.weight", root.Get("word_embeddings.weight", vocab, hidden), WeightKind.Embedding);
        var x = g.Op(Ops.Embedding, "embedding", new[] { ids, emb });             // [B, T, hidden]

        object Rope(int channelOffset, int positionsOffset) => new
        {
            heads, head_dim = hd, rotary_dims = hd / 2, style = "half", theta = 10000f,
            channel_offset = channelOffset, positions_offset = positionsOffset, freq_dtype = "f16",
        };

        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = root.Scope($"layers.{l}");
            string p = $"layers.{l}";
            string W(string name, LazyTensor t, WeightKind kind) => g.Weight($"transformer.layers.{l}.{name}", t, kind);
            string Ln(string name, string input) => g.Op(Ops.LayerNorm, $"{p}.{name}", new[] {
                input, W($"{name}.weight", w.Get($"{name}.weight", hidden), WeightKind.Vector),
                W($"{name}.bias", w.Get($"{name}.bias", hidden), WeightKind.Vector) }, new { eps = c.LayerNormEpsilon });

            var a = Ln("input_layernorm", x);                                        // [B, T, hidden]
            var att = w.Scope("attention");
            var (qkvW, qkvB) = ChatGlmWeights.Qkv(att, c, withBias: true);
            var qkv = g.Op(Ops.Linear, $"{p}.qkv", new[] {
                a, W("attention.query_key_value.weight", qkvW, WeightKind.Matrix),
                W("attention.query_key_value.bias", qkvB!, WeightKind.Vector) });     // [B, T, 3·qDim], grouped
            var parts = g.OpMulti(Ops.Split, $"{p}.qkv_split", new[] { qkv }, 3, new { sizes = new[] { qDim, qDim, qDim } });
            var q = g.Op(Ops.Rope, $"{p}.q_rope_pos", new[] { parts[0], pos }, Rope(0, 0));
            q = g.Op(Ops.Rope, $"{p}.q_rope_block", new[] { q, pos }, Rope(hd / 2, 1));
            var k = g.Op(Ops.Rope, $"{p}.k_rope_pos", new[] { parts[1], pos }, Rope(0, 0));
            k = g.Op(Ops.Rope, $"{p}.k_rope_block", new[] { k, pos }, Rope(hd / 2, 1));

            var sk = g.State($"past.{l}.key", DType.F32, "batch", heads, "ctx", hd);
            var sv = g.State($"past.{l}.value", DType.F32, "batch", heads, "ctx", hd);
            var ctx = g.Op(Ops.Attention, $"{p}.attention", new[] { q, k, parts[2], prefix, mask }, new
            {
                heads, kv_heads = heads, head_dim = hd, scale = (float)(1.0 / Math.Sqrt(hd)), causal = true,
                prefix_bidirectional = true, state_k = sk, state_v = sv,
            });                                                                        // [B, T, qDim]
            var attnOut = g.Op(Ops.Linear, $"{p}.dense", new[] {
                ctx, W("attention.dense.weight", att.Get("dense.weight", hidden, qDim), WeightKind.Matrix),
                W("attention.dense.bias", att.Get("dense.bias", hidden), WeightKind.Vector) });
            var aScaled = g.Op(Ops.Scale, $"{p}.attn_alpha", new[] { a }, new { alpha = Alpha });
            x = g.Op(Ops.Add, $"{p}.attn_residual", new[] { aScaled, attnOut });

            var m = Ln("post_attention_layernorm", x);
            var mlp = w.Scope("mlp");
            var up = g.Op(Ops.Linear, $"{p}.dense_h_to_4h", new[] {
                m, W("mlp.dense_h_to_4h.weight", mlp.Get("dense_h_to_4h.weight", ffn, hidden), WeightKind.Matrix),
                W("mlp.dense_h_to_4h.bias", mlp.Get("dense_h_to_4h.bias", ffn), WeightKind.Vector) });   // [B, T, ffn]
            var act = g.Op(Ops.Gelu, $"{p}.gelu", new[] { up }, new { approximate = "tanh" });
            var down = g.Op(Ops.Linear, $"{p}.dense_4h_to_h", new[] {
                act, W("mlp.dense_4h_to_h.weight", mlp.Get("dense_4h_to_h.weight", hidden, ffn), WeightKind.Matrix),
                W("mlp.dense_4h_to_h.bias", mlp.Get("dense_4h_to_h.bias", hidden), WeightKind.Vector) });
            var mScaled = g.Op(Ops.Scale, $"{p}.mlp_alpha", new[] { m }, new { alpha = Alpha });
            x = g.Op(Ops.Add, $"{p}.mlp_residual", new[] { mScaled, down });
        }

        var final = g.Op(Ops.LayerNorm, "final_layernorm", new[] {
            x, g.Weight("transformer.final_layernorm.weight", root.Get("final_layernorm.weight", hidden), WeightKind.Vector),
            g.Weight("transformer.final_layernorm.bias", root.Get("final_layernorm.bias", hidden), WeightKind.Vector) },
            new { eps = c.LayerNormEpsilon });
        var last = g.Op(Ops.KeepLast, "keep_last", new[] { final, keep });       // [B, T', hidden]
        var head = g.Weight("lm_head.weight", new WeightBinder(weights).Get("lm_head.weight", vocab, hidden), WeightKind.Matrix);
        var logits = g.Op(Ops.Linear, "logits", new[] { last, head });            // [B, T', vocab]
        g.Output(logits, DType.F32, "batch", "kept", vocab);
        return g.Build();
    }
}
