// BERT configuration, read with Hugging Face's field names (transformers' configuration_bert.py).
// Supports: absolute position embeddings, gelu/gelu_new/relu/silu activations, structurally pruned models
// (`pruned_heads`, and per-layer FFN widths taken from the weights). Not supported: relative position embeddings
// (relative_key, relative_key_query) and decoder mode (is_decoder / cross-attention).
using System.Globalization;
using System.Text.Json.Nodes;

namespace Hub.Models.Bert;

/// <summary>What a sequence classification head's logits mean (transformers' <c>problem_type</c>).</summary>
public enum BertProblemType
{
    /// <summary>One label per text: probabilities are softmax(logits).</summary>
    SingleLabel,
    /// <summary>Independent labels: probabilities are sigmoid(logits).</summary>
    MultiLabel,
    /// <summary>Regression: the logits are the prediction.</summary>
    Regression,
}

/// <summary>
/// The fields of a Hugging Face <c>config.json</c> that shape a BERT graph. Derived getters carry transformers'
/// defaults so a config that omits a field behaves as <c>BertConfig()</c> would.
/// </summary>
public sealed record BertConfig
{
    /// <summary><c>vocab_size</c>.</summary>
    public required int VocabSize { get; init; }
    /// <summary><c>hidden_size</c>.</summary>
    public required int HiddenSize { get; init; }
    /// <summary><c>num_hidden_layers</c>.</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary><c>num_attention_heads</c> before any pruning: fixes the head size (hidden / heads).</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary><c>intermediate_size</c> (a pruned layer may be narrower: its weights decide).</summary>
    public required int IntermediateSize { get; init; }
    /// <summary><c>hidden_act</c> (gelu = exact erf form; gelu_new/gelu_pytorch_tanh/gelu_fast = tanh form).</summary>
    public string HiddenAct { get; init; } = "gelu";
    /// <summary><c>max_position_embeddings</c>: the longest sequence the model accepts.</summary>
    public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary><c>type_vocab_size</c>: number of token types (segments).</summary>
    public int TypeVocabSize { get; init; } = 2;
    /// <summary><c>layer_norm_eps</c>.</summary>
    public float LayerNormEps { get; init; } = 1e-12f;
    /// <summary><c>pad_token_id</c>.</summary>
    public int PadTokenId { get; init; }
    /// <summary><c>position_embedding_type</c>; only "absolute" is supported.</summary>
    public string PositionEmbeddingType { get; init; } = "absolute";
    /// <summary><c>architectures[0]</c>, e.g. BertModel or BertForSequenceClassification.</summary>
    public string? Architecture { get; init; }
    /// <summary><c>id2label</c> in id order (absent → LABEL_0..LABEL_{n-1} as transformers names them).</summary>
    public IReadOnlyList<string> Id2Label { get; init; } = Array.Empty<string>();
    /// <summary><c>problem_type</c> as written, or null.</summary>
    public string? ProblemTypeName { get; init; }
    /// <summary><c>pruned_heads</c>: layer → heads removed by transformers' <c>prune_heads</c>.</summary>
    public IReadOnlyDictionary<int, IReadOnlySet<int>> PrunedHeads { get; init; } = new Dictionary<int, IReadOnlySet<int>>();
    /// <summary>The file the config came from, for error messages.</summary>
    public string Path { get; init; } = "config.json";

    /// <summary>Number of labels: the length of id2label (transformers derives num_labels from it).</summary>
    public int NumLabels => Id2Label.Count;

    /// <summary>Size of one attention head; pruning removes heads but never changes this.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Heads left in <paramref name="layer"/> after pruning.</summary>
    public int HeadsOf(int layer) => NumAttentionHeads - (PrunedHeads.TryGetValue(layer, out var p) ? p.Count : 0);

    /// <summary>The problem type; absent, transformers infers regression for one label and single-label otherwise.</summary>
    public BertProblemType ProblemType => ProblemTypeName switch
    {
        "multi_label_classification" => BertProblemType.MultiLabel,
        "regression" => BertProblemType.Regression,
        "single_label_classification" => BertProblemType.SingleLabel,
        _ => NumLabels == 1 ? BertProblemType.Regression : BertProblemType.SingleLabel,
    };

    /// <summary>The problem type in transformers' spelling (for IR metadata).</summary>
    public string ProblemTypeText => ProblemType switch
    {
        BertProblemType.MultiLabel => "multi_label_classification",
        BertProblemType.Regression => "regression",
        _ => "single_label_classification",
    };

    /// <summary>The Gelu op's <c>approximate</c> attribute, or null when the activation is not a GELU.</summary>
    public string? GeluApproximate => HiddenAct switch
    {
        "gelu" => "none",
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => "tanh",
        _ => null,
    };

    /// <summary>True when the config asks for a sequence classification head.</summary>
    public bool IsSequenceClassification => Architecture is not null && Architecture.EndsWith("ForSequenceClassification", StringComparison.Ordinal);

    /// <summary>Reads and validates a BERT config; every problem is a <see cref="ConfigException"/> naming the field.</summary>
    public static BertConfig Parse(JsonObject json, string path)
    {
        var r = new ConfigReader(json, path);
        var cfg = new BertConfig
        {
            VocabSize = r.Positive("vocab_size"),
            HiddenSize = r.Positive("hidden_size"),
            NumHiddenLayers = r.Positive("num_hidden_layers"),
            NumAttentionHeads = r.Positive("num_attention_heads"),
            IntermediateSize = r.Positive("intermediate_size"),
            HiddenAct = r.String("hidden_act") ?? "gelu",
            MaxPositionEmbeddings = r.Int("max_position_embeddings", 512),
            TypeVocabSize = r.Int("type_vocab_size", 2),
            LayerNormEps = r.Float("layer_norm_eps", 1e-12f),
            PadTokenId = r.Int("pad_token_id", 0),
            PositionEmbeddingType = r.String("position_embedding_type") ?? "absolute",
            Architecture = json["architectures"] is JsonArray a && a.Count > 0 ? (string?)a[0] : null,
            Id2Label = ReadLabels(r),
            ProblemTypeName = r.String("problem_type"),
            PrunedHeads = ReadPrunedHeads(r),
            Path = path,
        };
        if (cfg.HiddenSize % cfg.NumAttentionHeads != 0)
            throw r.Error("num_attention_heads", $"hidden_size {cfg.HiddenSize} is not a multiple of num_attention_heads {cfg.NumAttentionHeads}");
        if (cfg.MaxPositionEmbeddings <= 0) throw r.Error("max_position_embeddings", $"must be positive, got {cfg.MaxPositionEmbeddings}");
        if (cfg.TypeVocabSize <= 0) throw r.Error("type_vocab_size", $"must be positive, got {cfg.TypeVocabSize}");
        if (cfg.PositionEmbeddingType != "absolute")
            throw new UnsupportedModelException($"{path}: field 'position_embedding_type': '{cfg.PositionEmbeddingType}' is not supported; only 'absolute' BERT position embeddings are");
        if (r.Bool("is_decoder", false) || r.Bool("add_cross_attention", false))
            throw new UnsupportedModelException($"{path}: field 'is_decoder': BERT in decoder mode is not supported; export it as an encoder (is_decoder false)");
        if (cfg.GeluApproximate is null && cfg.HiddenAct is not ("relu" or "silu" or "swish"))
            throw new UnsupportedModelException($"{path}: field 'hidden_act': '{cfg.HiddenAct}' is not supported; use gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu or silu");
        if (cfg.ProblemTypeName is not (null or "single_label_classification" or "multi_label_classification" or "regression"))
            throw r.Error("problem_type", $"'{cfg.ProblemTypeName}' is not one of single_label_classification, multi_label_classification, regression");
        foreach (var (layer, heads) in cfg.PrunedHeads)
        {
            if (layer < 0 || layer >= cfg.NumHiddenLayers)
                throw r.Error("pruned_heads", $"layer {layer} does not exist (num_hidden_layers is {cfg.NumHiddenLayers})");
            foreach (var h in heads)
                if (h < 0 || h >= cfg.NumAttentionHeads)
                    throw r.Error("pruned_heads", $"layer {layer}: head {h} does not exist (num_attention_heads is {cfg.NumAttentionHeads})");
        }
        return cfg;
    }

    /// <summary>id2label / num_labels as transformers reads them (also used by other classifier heads).</summary>
    internal static IReadOnlyList<string> ReadLabels(ConfigReader r)
    {
        int? numLabels = r.IntOrNull("num_labels");
        if (r.Json["id2label"] is JsonObject map && map.Count > 0)
        {
            var labels = new string[map.Count];
            foreach (var (key, value) in map)
            {
                if (!int.TryParse(key, NumberStyles.Integer, CultureInfo.InvariantCulture, out var id) || id < 0 || id >= labels.Length)
                    throw r.Error("id2label", $"key '{key}' is not an id in [0, {labels.Length}); ids must be 0..n-1");
                labels[id] = value?.GetValue<string>() ?? throw r.Error("id2label", $"label of id {id} is null");
            }
            if (numLabels is int n && n != labels.Length)
                throw r.Error("num_labels", $"is {n} but id2label has {labels.Length} entries; make them agree");
            return labels;
        }
        var count = numLabels ?? 2;
        if (count <= 0) throw r.Error("num_labels", $"must be positive, got {count}");
        return Enumerable.Range(0, count).Select(i => $"LABEL_{i}").ToArray();
    }

    private static IReadOnlyDictionary<int, IReadOnlySet<int>> ReadPrunedHeads(ConfigReader r)
    {
        var result = new Dictionary<int, IReadOnlySet<int>>();
        if (r.Json["pruned_heads"] is not JsonObject map) return result;
        foreach (var (key, value) in map)
        {
            if (!int.TryParse(key, NumberStyles.Integer, CultureInfo.InvariantCulture, out var layer))
                throw r.Error("pruned_heads", $"key '{key}' is not a layer index");
            if (value is not JsonArray heads) throw r.Error("pruned_heads", $"layer {key}: expected a list of head indices");
            var set = new HashSet<int>();
            foreach (var h in heads)
            {
                try { set.Add(h!.GetValue<int>()); }
                catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
                { throw r.Error("pruned_heads", $"layer {key}: '{h?.ToJsonString()}' is not a head index"); }
            }
            if (set.Count > 0) result[layer] = set;
        }
        return result;
    }
}
