using System.Text.Json.Nodes;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>The LLaMA hyper-parameters an original layout declares, with the file they come from.</summary>
/// <param name="Dim">Model width (hidden_size).</param>
/// <param name="Layers">Number of transformer blocks.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads (equal to <paramref name="Heads"/> without GQA).</param>
/// <param name="Hidden">FFN width (intermediate_size).</param>
/// <param name="Vocab">Vocabulary size.</param>
/// <param name="NormEps">RMSNorm epsilon.</param>
/// <param name="RopeTheta">RoPE base.</param>
/// <param name="MaxPositions">Context length.</param>
/// <param name="Tied">True when the LM head is the token embedding.</param>
public sealed record LlamaHyperParams(int Dim, int Layers, int Heads, int KvHeads, int Hidden, int Vocab, double NormEps,
    double RopeTheta, int MaxPositions, bool Tied)
{
    /// <summary>Width of one head.</summary>
    public int HeadDim => Dim / Heads;

    /// <summary>The equivalent Hugging Face LLaMA config.json (<c>model_type</c> llama, <c>LlamaForCausalLM</c>).</summary>
    public JsonObject ToHfConfig(DType dtype, int? bos, int? eos, string sourceFormat)
    {
        var c = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = Dim,
            ["intermediate_size"] = Hidden,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = NormEps,
            ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = null,
            ["vocab_size"] = Vocab,
            ["max_position_embeddings"] = MaxPositions,
            ["tie_word_embeddings"] = Tied,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["torch_dtype"] = dtype switch { DType.BF16 => "bfloat16", DType.F16 => "float16", _ => "float32" },
            ["hub_source_format"] = sourceFormat,
        };
        if (bos is not null) c["bos_token_id"] = bos;
        if (eos is not null) c["eos_token_id"] = eos;
        return c;
    }

    /// <summary>Meta's FFN width rule: 2/3 of 4·dim, times <paramref name="multiplier"/>, rounded up to a multiple.</summary>
    public static int FfnWidth(int dim, int multipleOf, double? multiplier)
    {
        int hidden = (int)(2 * (4 * dim) / 3.0);
        if (multiplier is double m) hidden = (int)(m * hidden);
        return multipleOf * ((hidden + multipleOf - 1) / multipleOf);
    }
}

/// <summary>Meta's original LLaMA parameter names (also FlagAI's Aquila) and how they map onto Hugging Face's.</summary>
internal static class MetaLayout
{
    /// <summary>How a tensor kind is split across model-parallel shards (Meta's fairscale layers).</summary>
    private enum Split { Rows, Cols, Replicated, Embedding }

    private static readonly (string Meta, string Hf, Split Split)[] PerLayer =
    {
        ("attention.wq.weight", "self_attn.q_proj.weight", Split.Rows),
        ("attention.wk.weight", "self_attn.k_proj.weight", Split.Rows),
        ("attention.wv.weight", "self_attn.v_proj.weight", Split.Rows),
        ("attention.wo.weight", "self_attn.o_proj.weight", Split.Cols),
        ("feed_forward.w1.weight", "mlp.gate_proj.weight", Split.Rows),
        ("feed_forward.w2.weight", "mlp.down_proj.weight", Split.Cols),
        ("feed_forward.w3.weight", "mlp.up_proj.weight", Split.Rows),
        ("attention_norm.weight", "input_layernorm.weight", Split.Replicated),
        ("ffn_norm.weight", "post_attention_layernorm.weight", Split.Replicated),
    };

    /// <summary>
    /// Builds the HF-named source over <paramref name="shards"/> (one per model-parallel rank, rank order) and checks
    /// every merged shape against <paramref name="hp"/> (declared in <paramref name="paramsPath"/>).
    /// </summary>
    public static RenamedTensorSource Build(string location, IReadOnlyList<ITensorSource> shards, LlamaHyperParams hp, string paramsPath)
    {
        var src = new RenamedTensorSource(location);
        try
        {
            var s0 = shards[0];
            // Layer count: params and checkpoint must agree.
            if (!s0.TryGetInfo($"layers.{hp.Layers - 1}.attention.wq.weight", out _))
                throw new CheckpointFormatException(s0.Location, $"layers.{hp.Layers - 1}.attention.wq.weight",
                    $"missing, but {paramsPath} declares n_layers = {hp.Layers}; params and checkpoint disagree");
            if (s0.TryGetInfo($"layers.{hp.Layers}.attention.wq.weight", out _))
                throw new CheckpointFormatException(s0.Location, $"layers.{hp.Layers}.attention.wq.weight",
                    $"present, but {paramsPath} declares only n_layers = {hp.Layers}; params and checkpoint disagree");

            Add(src, shards, "tok_embeddings.weight", "model.embed_tokens.weight", Split.Embedding, new long[] { hp.Vocab, hp.Dim }, paramsPath);
            Add(src, shards, "norm.weight", "model.norm.weight", Split.Replicated, new long[] { hp.Dim }, paramsPath);
            if (!hp.Tied)
                Add(src, shards, "output.weight", "lm_head.weight", Split.Rows, new long[] { hp.Vocab, hp.Dim }, paramsPath);
            int hd = hp.HeadDim;
            for (int l = 0; l < hp.Layers; l++)
                foreach (var (meta, hf, split) in PerLayer)
                {
                    long[] shape = meta switch
                    {
                        "attention.wq.weight" => new long[] { hp.Heads * hd, hp.Dim },
                        "attention.wk.weight" or "attention.wv.weight" => new long[] { hp.KvHeads * hd, hp.Dim },
                        "attention.wo.weight" => new long[] { hp.Dim, hp.Heads * hd },
                        "feed_forward.w1.weight" or "feed_forward.w3.weight" => new long[] { hp.Hidden, hp.Dim },
                        "feed_forward.w2.weight" => new long[] { hp.Dim, hp.Hidden },
                        _ => new long[] { hp.Dim },
                    };
                    Add(src, shards, $"layers.{l}.{meta}", $"model.layers.{l}.{hf}", split, shape, paramsPath);
                }
            return src;
        }
        catch
        {
            src.Dispose();
            throw;
        }
    }

    private static void Add(RenamedTensorSource src, IReadOnlyList<ITensorSource> shards, string meta, string hf, Split split, long[] expected, string paramsPath)
    {
        if (!shards[0].TryGetInfo(meta, out var i0))
            throw new CheckpointFormatException(shards[0].Location, meta, "required tensor is missing from the checkpoint (is this a LLaMA-family checkpoint in Meta's layout?)");
        int axis;
        if (split == Split.Replicated || shards.Count == 1) axis = -1;
        else if (split == Split.Embedding)
            // Meta's LLaMA 1/2 shard embeddings by columns (ParallelEmbedding); later releases by rows: decide by shape.
            axis = i0.Shape.Rank == 2 && i0.Shape[1] * shards.Count == expected[1] && i0.Shape[0] == expected[0] ? 1 : 0;
        else axis = split == Split.Rows ? 0 : 1;

        if (axis < 0) src.AddRenamed(hf, shards[0], meta);
        else src.AddConcat(hf, axis, shards.Select(s => (s, meta)).ToList());

        src.TryGetInfo(hf, out var merged);
        if (!merged.Shape.ToArray().AsSpan().SequenceEqual(expected))
            throw new CheckpointFormatException(merged.FilePath, meta,
                $"shape {merged.Shape}{(shards.Count > 1 ? $" after merging {shards.Count} model-parallel shards" : "")} disagrees with {paramsPath}, which implies {new Shape(expected)}; " +
                "check that the parameters file belongs to these weights");
    }

    /// <summary>Infers how many model-parallel shards the checkpoint was saved with, from shard 0's wq rows.</summary>
    public static int ExpectedShardCount(ITensorSource shard0, LlamaHyperParams hp)
    {
        if (!shard0.TryGetInfo("layers.0.attention.wq.weight", out var wq) || wq.Shape.Rank != 2 || wq.Shape[0] == 0) return 1;
        if (wq.Shape[1] != hp.Dim) return 1; // a width mismatch, not a split: the shape check reports it
        long full = (long)hp.Heads * hp.HeadDim;
        return full % wq.Shape[0] == 0 && full / wq.Shape[0] > 1 ? (int)(full / wq.Shape[0]) : 1;
    }
}
