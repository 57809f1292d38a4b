// GPT-2 config.json fields (transformers' GPT2Config), shared by the LM and the sequence classifier.
using System.Text.Json.Nodes;

namespace Hub.Models.Gpt2;

/// <summary>GPT-2 hyper-parameters with Hugging Face's <c>config.json</c> field names.</summary>
public sealed record Gpt2Config
{
    /// <summary>Vocabulary size (<c>vocab_size</c>).</summary>
    public required int VocabSize { get; init; }
    /// <summary>Width (<c>n_embd</c>).</summary>
    public required int Hidden { get; init; }
    /// <summary>Layers (<c>n_layer</c>).</summary>
    public required int Layers { get; init; }
    /// <summary>Heads (<c>n_head</c>).</summary>
    public required int Heads { get; init; }
    /// <summary>Position table size (<c>n_positions</c>, or legacy <c>n_ctx</c>).</summary>
    public required int Positions { get; init; }
    /// <summary>MLP width (<c>n_inner</c>, default 4 × n_embd).</summary>
    public required int Inner { get; init; }
    /// <summary>LayerNorm epsilon (<c>layer_norm_epsilon</c>).</summary>
    public float LayerNormEps { get; init; } = 1e-5f;
    /// <summary><c>activation_function</c> (gelu_new, gelu, relu, ...).</summary>
    public string Activation { get; init; } = "gelu_new";
    /// <summary><c>scale_attn_weights</c>: divide scores by √head_dim.</summary>
    public bool ScaleAttnWeights { get; init; } = true;
    /// <summary><c>scale_attn_by_inverse_layer_idx</c>: also divide scores by layer index + 1.</summary>
    public bool ScaleByInverseLayerIdx { get; init; }
    /// <summary><c>tie_word_embeddings</c>.</summary>
    public bool TieWordEmbeddings { get; init; } = true;
    /// <summary><c>pad_token_id</c>; null when the config has none (a classifier then takes one row at a time).</summary>
    public int? PadTokenId { get; init; }
    /// <summary>First entry of <c>architectures</c>, when present.</summary>
    public string? Architecture { get; init; }
    /// <summary>Label names in id order (<c>id2label</c> / <c>num_labels</c>, default two LABEL_i).</summary>
    public IReadOnlyList<string> Id2Label { get; init; } = [];
    /// <summary>transformers' <c>problem_type</c> with its default (regression for one label, else single-label).</summary>
    public string ProblemType { get; init; } = "single_label_classification";
    /// <summary>Head width.</summary>
    public int HeadDim => Hidden / Heads;
    /// <summary>True for <c>GPT2ForSequenceClassification</c> (score head on the last non-padding token).</summary>
    public bool IsSequenceClassification => IsClassifier(Architecture);

    /// <summary>True when an <c>architectures</c> entry names the sequence classification head.</summary>
    public static bool IsClassifier(string? architecture) => architecture == "GPT2ForSequenceClassification";

    /// <summary>The first <c>architectures</c> entry of a config, or null.</summary>
    public static string? ArchitectureOf(JsonObject config) => config["architectures"] is JsonArray a && a.Count > 0 ? (string?)a[0] : null;

    /// <summary>Reads the config, checking required fields and consistency.</summary>
    public static Gpt2Config Read(ConfigReader c)
    {
        int hidden = c.Positive("n_embd");
        int heads = c.Positive("n_head");
        if (hidden % heads != 0) throw c.Error("n_head", $"n_embd {hidden} is not divisible by n_head {heads}");
        if (c.Has("add_cross_attention") && c.Bool("add_cross_attention", false))
            throw c.Error("add_cross_attention", "GPT-2 with cross-attention (encoder-decoder use) is not supported");
        var cfg = new Gpt2Config
        {
            VocabSize = c.Positive("vocab_size"),
            Hidden = hidden,
            Layers = c.Positive("n_layer"),
            Heads = heads,
            Positions = c.IntOrNull("n_positions") ?? c.IntOrNull("n_ctx") ?? throw c.Error("n_positions", "required field is missing (nor is legacy n_ctx present)"),
            Inner = c.IntOrNull("n_inner") ?? 4 * hidden,
            LayerNormEps = c.Float("layer_norm_epsilon", 1e-5f),
            Activation = c.String("activation_function") ?? "gelu_new",
            ScaleAttnWeights = c.Bool("scale_attn_weights", true),
            ScaleByInverseLayerIdx = c.Bool("scale_attn_by_inverse_layer_idx", false),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", true),
            PadTokenId = c.IntOrNull("pad_token_id"),
            Architecture = ArchitectureOf(c.Json),
        };
        if (!cfg.IsSequenceClassification) return cfg;
        var labels = Bert.BertConfig.ReadLabels(c);
        var problem = c.String("problem_type") ?? (labels.Count == 1 ? "regression" : "single_label_classification");
        if (problem is not ("single_label_classification" or "multi_label_classification" or "regression"))
            throw c.Error("problem_type", $"'{problem}' is not one of single_label_classification, multi_label_classification, regression");
        return cfg with { Id2Label = labels, ProblemType = problem };
    }
}
