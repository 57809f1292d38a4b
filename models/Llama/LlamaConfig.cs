// LLaMA hyper-parameters as transformers' LlamaConfig names them (configuration_llama.py), read from both config
// styles in circulation: transformers 4.x (`torch_dtype`, top-level `rope_theta`, `rope_scaling` with `type` or
// `rope_type`) and 5.x (`dtype`, `rope_parameters` {rope_type, rope_theta, factor, ...}). Aquila's hub configs
// (model_type "aquila") use the same fields.
// RoPE scaling follows transformers' modeling_rope_utils.py: "default", "linear", "dynamic" (NTK) and "llama3".
// Not supported (a ConfigException says so): "yarn", "longrope" and other rope types, hidden_act other than silu.
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Hub.Models.Llama;

/// <summary>
/// RoPE frequency scaling for long contexts, as transformers' <c>rope_scaling</c> / <c>rope_parameters</c> describe it.
/// Becomes the Rope op's <c>scaling</c> attribute (see <c>Hub.IR.Ops.Rope</c>).
/// </summary>
public sealed record LlamaRopeScaling
{
    /// <summary>The rope types this builder supports besides "default" (which means no scaling).</summary>
    public static readonly IReadOnlyList<string> SupportedTypes = ["default", "linear", "dynamic", "llama3"];

    /// <summary>"linear", "dynamic" or "llama3".</summary>
    [JsonPropertyName("rope_type")] public required string Type { get; init; }

    /// <summary>Scaling factor (<c>factor</c>): linear divides positions by it; dynamic and llama3 use it as transformers does.</summary>
    [JsonPropertyName("factor")] public required double Factor { get; init; }

    /// <summary>Context length the model was trained with (<c>original_max_position_embeddings</c>; dynamic and llama3).</summary>
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>llama3: wavelengths longer than original_max / low_freq_factor are fully scaled (<c>low_freq_factor</c>).</summary>
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }

    /// <summary>llama3: wavelengths shorter than original_max / high_freq_factor are untouched (<c>high_freq_factor</c>).</summary>
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }

    /// <summary>The Rope op's <c>scaling</c> attribute.</summary>
    public JsonObject ToAttribute()
    {
        var o = new JsonObject { ["type"] = Type, ["factor"] = Factor };
        if (OriginalMaxPositionEmbeddings is int n) o["original_max_position_embeddings"] = n;
        if (LowFreqFactor is double lo) o["low_freq_factor"] = lo;
        if (HighFreqFactor is double hi) o["high_freq_factor"] = hi;
        return JsonNode.Parse(o.ToJsonString())!.AsObject(); // parsed-JSON values read back as any numeric type
    }
}

/// <summary>LLaMA / Aquila hyper-parameters with Hugging Face's <c>config.json</c> field names.</summary>
public sealed record LlamaConfig
{
    /// <summary><c>model_type</c>: "llama" or "aquila" (also the IR's model type).</summary>
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "llama";
    /// <summary><c>vocab_size</c>: rows of the embedding and of the LM head.</summary>
    [JsonPropertyName("vocab_size")] public required int VocabSize { get; init; }
    /// <summary><c>hidden_size</c>: the residual width D.</summary>
    [JsonPropertyName("hidden_size")] public required int HiddenSize { get; init; }
    /// <summary><c>intermediate_size</c>: the SwiGLU width F.</summary>
    [JsonPropertyName("intermediate_size")] public required int IntermediateSize { get; init; }
    /// <summary><c>num_hidden_layers</c>.</summary>
    [JsonPropertyName("num_hidden_layers")] public required int NumHiddenLayers { get; init; }
    /// <summary><c>num_attention_heads</c>: query heads H.</summary>
    [JsonPropertyName("num_attention_heads")] public required int NumAttentionHeads { get; init; }
    /// <summary><c>num_key_value_heads</c>: key/value heads for grouped-query attention; null = multi-head.</summary>
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; init; }
    /// <summary><c>head_dim</c> when given explicitly (it may differ from hidden/heads); null = hidden / heads.</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimOverride { get; init; }
    /// <summary><c>max_position_embeddings</c>: the context the model supports.</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary><c>rms_norm_eps</c>.</summary>
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;
    /// <summary><c>rope_theta</c> (5.x: <c>rope_parameters.rope_theta</c>): the RoPE base.</summary>
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;
    /// <summary>RoPE scaling (<c>rope_scaling</c> / <c>rope_parameters</c>); null for the default rope type.</summary>
    [JsonPropertyName("rope_scaling")] public LlamaRopeScaling? RopeScaling { get; init; }
    /// <summary><c>attention_bias</c>: q/k/v/o projections carry biases.</summary>
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }
    /// <summary><c>mlp_bias</c>: gate/up/down projections carry biases.</summary>
    [JsonPropertyName("mlp_bias")] public bool MlpBias { get; init; }
    /// <summary><c>tie_word_embeddings</c>: the LM head is the embedding matrix.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }
    /// <summary><c>torch_dtype</c> (4.x) or <c>dtype</c> (5.x): the checkpoint's declared dtype, informative only.</summary>
    [JsonPropertyName("torch_dtype")] public string? Dtype { get; init; }
    /// <summary><c>bos_token_id</c>.</summary>
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }
    /// <summary><c>eos_token_id</c> (one id or several).</summary>
    [JsonPropertyName("eos_token_id")] public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary><c>pad_token_id</c>.</summary>
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; }

    /// <summary>Key/value heads: <c>num_key_value_heads ?? num_attention_heads</c> (transformers' default).</summary>
    public int KvHeads => NumKeyValueHeads ?? NumAttentionHeads;
    /// <summary>Per-head width: <c>head_dim ?? hidden_size / num_attention_heads</c>.</summary>
    public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    /// <summary>Width of all query heads (H·hd); equals hidden_size unless head_dim is set otherwise.</summary>
    public int QDim => NumAttentionHeads * HeadDim;
    /// <summary>Width of all key (or value) heads (KV·hd).</summary>
    public int KvDim => KvHeads * HeadDim;

    /// <summary>
    /// Attributes of the Rope op for <paramref name="heads"/> heads of this model: rotate_half style over the whole
    /// head, base <see cref="RopeTheta"/>, and <see cref="RopeScaling"/> when set. A dictionary, so that
    /// <c>GraphBuilder</c> serializes it into parsed-JSON values that read back as any numeric type.
    /// </summary>
    public Dictionary<string, object> RopeAttributes(int heads)
    {
        var a = new Dictionary<string, object>
        {
            ["heads"] = heads,
            ["head_dim"] = HeadDim,
            ["rotary_dims"] = HeadDim,
            ["style"] = "half",
            ["theta"] = RopeTheta,
        };
        if (RopeScaling is { } s) a["scaling"] = s.ToAttribute();
        return a;
    }

    /// <summary>Reads and validates a config; every problem is a <see cref="ConfigException"/> naming the field.</summary>
    public static LlamaConfig Read(ConfigReader c)
    {
        // Configs built in code (converters translating params.json) hold CLR-typed values that JsonNode will not
        // convert across numeric types; a text round trip gives every value the parsed-JSON form ConfigReader expects.
        c = new ConfigReader(JsonNode.Parse(c.Json.ToJsonString())!.AsObject(), c.Path);
        var act = c.String("hidden_act") ?? "silu";
        if (act is not ("silu" or "swish"))
            throw c.Error("hidden_act", $"'{act}' is not supported for LLaMA (its MLP is SwiGLU: silu)");
        int hidden = c.Positive("hidden_size");
        int heads = c.Positive("num_attention_heads");
        int? kv = c.IntOrNull("num_key_value_heads");
        int? headDim = c.IntOrNull("head_dim");
        if (kv is int k && (k <= 0 || heads % k != 0))
            throw c.Error("num_key_value_heads", $"must be positive and divide num_attention_heads {heads}, got {k}");
        if (headDim is int hd0 && hd0 <= 0) throw c.Error("head_dim", $"must be positive, got {hd0}");
        if (headDim is null && hidden % heads != 0)
            throw c.Error("num_attention_heads", $"hidden_size {hidden} is not divisible by num_attention_heads {heads}; set head_dim");
        int hd = headDim ?? hidden / heads;
        if (hd % 2 != 0) throw c.Error(headDim is null ? "num_attention_heads" : "head_dim", $"head_dim {hd} must be even for RoPE");
        if (c.Int("pretraining_tp", 1) < 1) throw c.Error("pretraining_tp", "must be at least 1");

        int maxPos = c.Int("max_position_embeddings", 2048);
        var (theta, scaling) = ReadRope(c, maxPos);
        return new LlamaConfig
        {
            ModelType = c.String("model_type") ?? "llama",
            VocabSize = c.Positive("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = c.Positive("intermediate_size"),
            NumHiddenLayers = c.Positive("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kv,
            HeadDimOverride = headDim,
            MaxPositionEmbeddings = maxPos,
            RmsNormEps = PositiveDouble(c, "rms_norm_eps", 1e-6),
            RopeTheta = theta,
            RopeScaling = scaling,
            AttentionBias = c.Bool("attention_bias", false),
            MlpBias = c.Bool("mlp_bias", false),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            Dtype = c.String("torch_dtype") ?? c.String("dtype"),
            BosTokenId = c.IntOrNull("bos_token_id"),
            EosTokenIds = c.Ints("eos_token_id"),
            PadTokenId = c.IntOrNull("pad_token_id"),
        };
    }

    /// <summary>
    /// RoPE base and scaling from either style. 5.x: <c>rope_parameters</c> holds everything (theta included);
    /// 4.x: <c>rope_theta</c> at the top level and <c>rope_scaling</c> (null, or an object whose type is under
    /// <c>rope_type</c> or the older <c>type</c>).
    /// </summary>
    private static (double Theta, LlamaRopeScaling? Scaling) ReadRope(ConfigReader c, int maxPos)
    {
        string field;
        JsonObject? o;
        double theta = PositiveDouble(c, "rope_theta", 10000.0);
        if (c.Json["rope_parameters"] is JsonNode rp)
        {
            field = "rope_parameters";
            o = rp as JsonObject ?? throw c.Error(field, $"must be an object, got {rp.ToJsonString()}");
            if (o["rope_theta"] is JsonNode t) theta = Number(c, $"{field}.rope_theta", t);
        }
        else if (c.Json["rope_scaling"] is JsonNode rs)
        {
            field = "rope_scaling";
            o = rs as JsonObject ?? throw c.Error(field, $"must be an object or null, got {rs.ToJsonString()}");
        }
        else return (theta, null);
        if (theta <= 0) throw c.Error(field + ".rope_theta", $"must be positive, got {theta}");

        var typeKey = o["rope_type"] is not null ? "rope_type" : "type";
        var type = o[typeKey] is JsonNode tn ? Text(c, $"{field}.{typeKey}", tn) : "default";
        if (type == "default") return (theta, null);
        if (!LlamaRopeScaling.SupportedTypes.Contains(type))
            throw c.Error($"{field}.{typeKey}",
                $"rope type '{type}' is not supported; supported: {string.Join(", ", LlamaRopeScaling.SupportedTypes)}");

        double factor = o["factor"] is JsonNode f ? Number(c, $"{field}.factor", f) : throw c.Error($"{field}.factor", $"required for rope type '{type}'");
        if (factor <= 0 || (type == "llama3" && factor < 1)) throw c.Error($"{field}.factor", $"must be positive (at least 1 for llama3), got {factor}");
        int? original = o["original_max_position_embeddings"] is JsonNode on ? (int)Number(c, $"{field}.original_max_position_embeddings", on) : null;
        if (original is <= 0) throw c.Error($"{field}.original_max_position_embeddings", $"must be positive, got {original}");
        double? lo = null, hi = null;
        switch (type)
        {
            case "dynamic":
                // transformers falls back to max_position_embeddings when the original length is not recorded.
                original ??= maxPos;
                break;
            case "llama3":
                lo = o["low_freq_factor"] is JsonNode l ? Number(c, $"{field}.low_freq_factor", l) : throw c.Error($"{field}.low_freq_factor", "required for rope type 'llama3'");
                hi = o["high_freq_factor"] is JsonNode h ? Number(c, $"{field}.high_freq_factor", h) : throw c.Error($"{field}.high_freq_factor", "required for rope type 'llama3'");
                if (original is null) throw c.Error($"{field}.original_max_position_embeddings", "required for rope type 'llama3'");
                if (!(hi > lo) || lo <= 0) throw c.Error($"{field}.high_freq_factor", $"must exceed low_freq_factor > 0, got low {lo}, high {hi}");
                break;
        }
        return (theta, new LlamaRopeScaling { Type = type, Factor = factor, OriginalMaxPositionEmbeddings = original, LowFreqFactor = lo, HighFreqFactor = hi });
    }

    private static double PositiveDouble(ConfigReader c, string field, double def)
    {
        if (c.Json[field] is not JsonNode n) return def;
        var v = Number(c, field, n);
        return v > 0 ? v : throw c.Error(field, $"must be positive, got {v}");
    }

    private static double Number(ConfigReader c, string field, JsonNode n)
    {
        try { return n.GetValue<double>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        { throw new ConfigException(c.Path, field, $"must be a number, got {n.ToJsonString()}", e); }
    }

    private static string Text(ConfigReader c, string field, JsonNode n)
    {
        try { return n.GetValue<string>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        { throw new ConfigException(c.Path, field, $"must be a string, got {n.ToJsonString()}", e); }
    }
}
