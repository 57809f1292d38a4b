// The GPT-2 body shared by GPT2LMHeadModel and GPT2ForSequenceClassification, as transformers' GPT2Model computes it:
// wte + wpe → n_layer pre-LN blocks (LN → fused c_attn → causal attention → c_proj; LN → c_fc → act → c_proj) → ln_f.
// Conv1D weights are stored [in, out] and transposed here to the IR's nn.Linear layout.
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.Gpt2;

/// <summary>Builds GPT2Model (embeddings, blocks, final LayerNorm) into a graph; the heads are added by the caller.</summary>
public static class Gpt2Body
{
    /// <summary>The body's outputs: the final hidden states and the IR name of the token embedding (the tied LM head).</summary>
    /// <param name="Hidden">Node of <c>ln_f</c>'s output.  [batch, seq, n_embd]</param>
    /// <param name="Wte">IR weight name of <c>transformer.wte.weight</c>.  [vocab, n_embd]</param>
    public readonly record struct Result(string Hidden, string Wte);

    /// <summary>
    /// Emits GPT2Model over <paramref name="ids"/>/<paramref name="positions"/> with the key mask <paramref name="mask"/>.
    /// With <paramref name="cache"/> the attention reads and appends the <c>past.{i}.key/value</c> states (generation);
    /// without, it attends over this call's tokens only (classification).
    /// </summary>
    /// <param name="b">Graph under construction.</param>
    /// <param name="cfg">Parsed config.</param>
    /// <param name="w">The body's scope ("transformer" or, in legacy checkpoints, the root).</param>
    /// <param name="reader">Config reader, for errors naming config fields.</param>
    /// <param name="ids">input_ids node.  [batch, seq] I32</param>
    /// <param name="positions">position_ids node.  [batch, seq] I32</param>
    /// <param name="mask">attention_mask node.  [batch, total] F32</param>
    /// <param name="cache">Whether the attention uses the KV-cache states.</param>
    public static Result Build(GraphBuilder b, Gpt2Config cfg, WeightBinder w, ConfigReader reader, string ids, string positions, string mask, bool cache)
    {
        int d = cfg.Hidden, hd = cfg.HeadDim;
        var wte = b.Weight("transformer.wte.weight", w.Get("wte.weight", cfg.VocabSize, d), WeightKind.Embedding);
        var wpe = b.Weight("transformer.wpe.weight", w.Get("wpe.weight", cfg.Positions, d), WeightKind.Embedding);
        // [batch, seq, d]
        var x = b.Op(Ops.Add, "embed", [b.Op(Ops.Embedding, "wte", [ids, wte]), b.Op(Ops.Embedding, "wpe", [positions, wpe])]);

        for (int i = 0; i < cfg.Layers; i++)
        {
            var l = w.Scope($"h.{i}");
            string p = $"transformer.h.{i}";
            var ln1 = b.Op(Ops.LayerNorm, $"{p}.ln_1", [x, Vec(b, l, $"{p}.ln_1.weight", "ln_1.weight", d), Vec(b, l, $"{p}.ln_1.bias", "ln_1.bias", d)], new { eps = cfg.LayerNormEps });
            // Conv1D stores [in, out]; the IR's Linear wants nn.Linear's [out, in].  qkv: [batch, seq, 3d]
            var qkvW = b.Weight($"{p}.attn.c_attn.weight", l.Get("attn.c_attn.weight", d, 3 * d).Transpose2D(), WeightKind.Matrix);
            var qkv = b.Op(Ops.Linear, $"{p}.attn.c_attn", [ln1, qkvW, Vec(b, l, $"{p}.attn.c_attn.bias", "attn.c_attn.bias", 3 * d)]);
            var parts = b.OpMulti(Ops.Split, $"{p}.attn.split", [qkv], 3, new { sizes = new[] { d, d, d } });
            float scale = (cfg.ScaleAttnWeights ? 1f / MathF.Sqrt(hd) : 1f) / (cfg.ScaleByInverseLayerIdx ? i + 1 : 1);
            string att;
            if (cache)
            {
                var k = b.State($"past.{i}.key", DType.F32, "batch", cfg.Heads, "ctx", hd);
                var v = b.State($"past.{i}.value", DType.F32, "batch", cfg.Heads, "ctx", hd);
                att = b.Op(Ops.Attention, $"{p}.attn", [parts[0], parts[1], parts[2], mask],
                    new { heads = cfg.Heads, kv_heads = cfg.Heads, head_dim = hd, scale, causal = true, state_k = k, state_v = v });
            }
            else
            {
                att = b.Op(Ops.Attention, $"{p}.attn", [parts[0], parts[1], parts[2], mask],
                    new { heads = cfg.Heads, kv_heads = cfg.Heads, head_dim = hd, scale, causal = true });
            }
            var projW = b.Weight($"{p}.attn.c_proj.weight", l.Get("attn.c_proj.weight", d, d).Transpose2D(), WeightKind.Matrix);
            var proj = b.Op(Ops.Linear, $"{p}.attn.c_proj", [att, projW, Vec(b, l, $"{p}.attn.c_proj.bias", "attn.c_proj.bias", d)]);
            x = b.Op(Ops.Add, $"{p}.residual_1", [x, proj]);

            var ln2 = b.Op(Ops.LayerNorm, $"{p}.ln_2", [x, Vec(b, l, $"{p}.ln_2.weight", "ln_2.weight", d), Vec(b, l, $"{p}.ln_2.bias", "ln_2.bias", d)], new { eps = cfg.LayerNormEps });
            var fcW = b.Weight($"{p}.mlp.c_fc.weight", l.Get("mlp.c_fc.weight", d, cfg.Inner).Transpose2D(), WeightKind.Matrix);
            var fc = b.Op(Ops.Linear, $"{p}.mlp.c_fc", [ln2, fcW, Vec(b, l, $"{p}.mlp.c_fc.bias", "mlp.c_fc.bias", cfg.Inner)]);
            var act = Activation(b, $"{p}.mlp.act", fc, cfg.Activation, reader);
            var outW = b.Weight($"{p}.mlp.c_proj.weight", l.Get("mlp.c_proj.weight", cfg.Inner, d).Transpose2D(), WeightKind.Matrix);
            var mlp = b.Op(Ops.Linear, $"{p}.mlp.c_proj", [act, outW, Vec(b, l, $"{p}.mlp.c_proj.bias", "mlp.c_proj.bias", d)]);
            x = b.Op(Ops.Add, $"{p}.residual_2", [x, mlp]);
        }

        // [batch, seq, d]
        var lnf = b.Op(Ops.LayerNorm, "transformer.ln_f", [x, Vec(b, w, "transformer.ln_f.weight", "ln_f.weight", d), Vec(b, w, "transformer.ln_f.bias", "ln_f.bias", d)], new { eps = cfg.LayerNormEps });
        return new Result(lnf, wte);
    }

    /// <summary>The body's scope: current checkpoints prefix it with "transformer.", legacy hub checkpoints do not.</summary>
    public static WeightBinder Scope(WeightBinder root) => root.Has("transformer.wte.weight") ? root.Scope("transformer") : root;

    private static string Vec(GraphBuilder b, WeightBinder scope, string irName, string name, long size) =>
        b.Weight(irName, scope.Get(name, size), WeightKind.Vector);

    internal static string Activation(GraphBuilder b, string name, string x, string act, ConfigReader reader) => act switch
    {
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => b.Op(Ops.Gelu, name, [x], new { approximate = "tanh" }),
        "gelu" => b.Op(Ops.Gelu, name, [x], new { approximate = "none" }),
        "relu" => b.Op(Ops.Relu, name, [x]),
        "silu" or "swish" => b.Op(Ops.Silu, name, [x]),
        "tanh" => b.Op(Ops.Tanh, name, [x]),
        _ => throw reader.Error("activation_function", $"'{act}' is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu, silu, tanh are)"),
    };
}
