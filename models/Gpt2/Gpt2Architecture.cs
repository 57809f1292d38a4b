// GPT-2 (Radford et al. 2019) as transformers' modeling_gpt2.py computes it: pre-LN blocks, learned absolute
// positions, Conv1D projections stored [in, out], fused c_attn (q|k|v along the output axis), gelu_new, LM head tied
// to wte. Legacy hub checkpoints (no "transformer." prefix, attn.bias/masked_bias buffers) load too.
// GPT2ForSequenceClassification: score.weight [num_labels, n_embd] (no bias) on the hidden state of each row's last
// non-padding token, picked as transformers does: the rightmost token whose id != pad_token_id (works for left and
// right padding); the host computes that index from the ids (docs/model-graphs.md) and GatherRows applies it.
// Not supported: cross-attention (add_cross_attention), reorder_and_upcast_attn (a numerics switch for fp16 training),
// GPT2DoubleHeadsModel / token classification / question answering heads.
using System.Globalization;
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.Gpt2;

/// <summary>GPT-2: the causal LM (<c>GPT2LMHeadModel</c>) and the sequence classifier (<c>GPT2ForSequenceClassification</c>).</summary>
public sealed class Gpt2Architecture : IModelArchitecture
{
    /// <inheritdoc/>
    public string Name => "gpt2";

    /// <inheritdoc/>
    public bool Matches(JsonObject config) => (string?)config["model_type"] == "gpt2";

    /// <inheritdoc/>
    public ModelTask TaskOf(JsonObject config) =>
        Gpt2Config.IsClassifier(Gpt2Config.ArchitectureOf(config)) ? ModelTask.SequenceClassification : ModelTask.CausalLM;

    /// <inheritdoc/>
    public ModelExport Build(ModelSource source, ExportSettings settings)
    {
        var reader = new ConfigReader(source.Config, source.ConfigPath);
        var cfg = Gpt2Config.Read(reader);
        var root = new WeightBinder(source.Weights);
        return cfg.IsSequenceClassification ? BuildClassifier(cfg, root, reader) : BuildCausalLM(cfg, root, reader);
    }

    private static ModelExport BuildCausalLM(Gpt2Config cfg, WeightBinder root, ConfigReader reader)
    {
        var b = new GraphBuilder("gpt2");
        var ids = b.Input("input_ids", DType.I32, "batch", "seq");
        var pos = b.Input("position_ids", DType.I32, "batch", "seq");
        var mask = b.Input("attention_mask", DType.F32, "batch", "total");
        var keep = b.Input("logits_to_keep", DType.I32, 1);

        var body = Gpt2Body.Build(b, cfg, Gpt2Body.Scope(root), reader, ids, pos, mask, cache: true);
        var last = b.Op(Ops.KeepLast, "keep_last", [body.Hidden, keep]);
        // Tied head: the embedding matrix itself (a .bin's lm_head.weight shares wte's storage anyway).
        string head = body.Wte;
        if (!cfg.TieWordEmbeddings && root.Has("lm_head.weight"))
            head = b.Weight("lm_head.weight", root.Get("lm_head.weight", cfg.VocabSize, cfg.Hidden), WeightKind.Matrix);
        var logits = b.Op(Ops.Linear, "logits", [last, head]);
        b.Output(logits, DType.F32, "batch", "kept", cfg.VocabSize);

        CausalLMMetadata.Fill(b.Metadata, reader, cfg.VocabSize, cfg.Positions, "linear");
        return b.Build();
    }

    private static ModelExport BuildClassifier(Gpt2Config cfg, WeightBinder root, ConfigReader reader)
    {
        int labels = cfg.Id2Label.Count, d = cfg.Hidden;
        var info = root.Info("score.weight");
        if (info.Shape.Rank != 2 || info.Shape[0] != labels)
            throw new ConfigException(reader.Path, "num_labels",
                $"the config has {labels} labels (id2label/num_labels) but tensor 'score.weight' in {info.FilePath} has shape {info.Shape} " +
                $"(expected [{labels}, {d}]); fix id2label/num_labels in config.json to match the score head");
        if (info.Shape[1] != d)
            throw new CheckpointFormatException(info.FilePath, "score.weight",
                $"shape {info.Shape} is not [{labels}, n_embd {d}]; check that config.json belongs to these weights");

        var b = new GraphBuilder("gpt2");
        var ids = b.Input("input_ids", DType.I32, "batch", "seq");
        var pos = b.Input("position_ids", DType.I32, "batch", "seq");
        var mask = b.Input("attention_mask", DType.F32, "batch", "seq");
        var lastIndex = b.Input("last_token_index", DType.I32, "batch");

        // No KV cache: every call classifies whole rows.  [batch, seq, d]
        var body = Gpt2Body.Build(b, cfg, Gpt2Body.Scope(root), reader, ids, pos, mask, cache: false);
        // transformers scores every position then keeps the last non-padding one; the head is per-row, so gathering
        // first gives the same numbers for a fraction of the work.  [batch, d] → [batch, num_labels]
        var pooled = b.Op(Ops.GatherRows, "last_token", [body.Hidden, lastIndex]);
        var score = b.Weight("score.weight", root.Get("score.weight", labels, d), WeightKind.Matrix);
        var logits = b.Op(Ops.Linear, "logits", [pooled, score]);
        b.Output(logits, DType.F32, "batch", labels);

        var md = b.Metadata;
        md["task"] = "sequence_classification";
        md["max_position_embeddings"] = cfg.Positions;
        md["positions"] = "linear";
        md["pooling"] = "last_non_pad_token";
        md["hidden_size"] = d;
        if (cfg.PadTokenId is int pad) md["pad_token_id"] = pad;
        md["num_labels"] = labels;
        var names = new JsonObject();
        for (int i = 0; i < labels; i++) names[i.ToString(CultureInfo.InvariantCulture)] = cfg.Id2Label[i];
        md["id2label"] = names;
        md["problem_type"] = cfg.ProblemType;
        return b.Build();
    }
}
