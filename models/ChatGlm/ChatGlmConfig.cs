// ChatGLM configuration, after THUDM's configuration_chatglm.py for ChatGLM-6B (v1, 2023-03) and
// ChatGLM2-6B / ChatGLM3-6B (v2/v3, one architecture). All three share model_type "chatglm"; the variant is
// told apart by keys only v1 has (position_encoding_2d, inner_hidden_size) or lacks (padded_vocab_size).
// Not supported: v1 with position_encoding_2d = false (no released checkpoint uses it), prefix tuning (pre_seq_len),
// THUDM's pre-quantized checkpoints (quantization_bit 4/8: their own packing; Hub compresses float checkpoints itself).
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Hub.Models.ChatGlm;

/// <summary>Which ChatGLM architecture a config describes.</summary>
public enum ChatGlmVariant
{
    /// <summary>ChatGLM-6B: LayerNorm, per-head QKV, 2D RoPE, alpha residuals, GELU, bidirectional prefix.</summary>
    V1 = 1,
    /// <summary>ChatGLM2-6B / ChatGLM3-6B (and GLM-4's graph): RMSNorm, MQA groups, partial interleaved RoPE, SwiGLU.</summary>
    V2 = 2,
}

/// <summary>How <c>rope_ratio</c> is applied. The config alone cannot tell ChatGLM2-6B-32k from ChatGLM3-6B-32k.</summary>
public enum ChatGlmRopeRatioMode
{
    /// <summary>RoPE base = 10000 · rope_ratio (ChatGLM3-6B-32k/-128k, GLM-4): the default.</summary>
    ScaleBase,
    /// <summary>Positions divided by rope_ratio, base 10000 (ChatGLM2-6B-32k's position interpolation).</summary>
    DividePositions,
}

/// <summary>
/// A THUDM ChatGLM config.json, with Hugging Face's field names. v1 and v2/v3 fields live side by side; derived
/// getters give the values the graph builders use.
/// </summary>
public sealed record ChatGlmConfig
{
    /// <summary>Which architecture the config describes.</summary>
    public required ChatGlmVariant Variant { get; init; }

    /// <summary>Model width.</summary>
    [JsonPropertyName("hidden_size")] public required int HiddenSize { get; init; }
    /// <summary>Transformer blocks.</summary>
    [JsonPropertyName("num_layers")] public required int NumLayers { get; init; }
    /// <summary>Query heads.</summary>
    [JsonPropertyName("num_attention_heads")] public required int NumAttentionHeads { get; init; }
    /// <summary>Per-head width (v2/v3); v1 uses hidden/heads.</summary>
    [JsonPropertyName("kv_channels")] public int? KvChannelsField { get; init; }
    /// <summary>v2/v3: true for grouped K/V (every released checkpoint).</summary>
    [JsonPropertyName("multi_query_attention")] public bool MultiQueryAttention { get; init; }
    /// <summary>v2/v3: K/V groups when <see cref="MultiQueryAttention"/>.</summary>
    [JsonPropertyName("multi_query_group_num")] public int MultiQueryGroupNum { get; init; } = 1;
    /// <summary>v2/v3: MLP width (each half of dense_h_to_4h).</summary>
    [JsonPropertyName("ffn_hidden_size")] public int? FfnHiddenSize { get; init; }
    /// <summary>v1: MLP width.</summary>
    [JsonPropertyName("inner_hidden_size")] public int? InnerHiddenSize { get; init; }
    /// <summary>v2/v3: embedding rows and logits width (vocab rounded up).</summary>
    [JsonPropertyName("padded_vocab_size")] public int? PaddedVocabSize { get; init; }
    /// <summary>v1: embedding rows and logits width.</summary>
    [JsonPropertyName("vocab_size")] public int? VocabSizeField { get; init; }
    /// <summary>v2/v3: rows of the RoPE table, i.e. the longest sequence.</summary>
    [JsonPropertyName("seq_length")] public int? SeqLength { get; init; }
    /// <summary>v1: the longest sequence.</summary>
    [JsonPropertyName("max_sequence_length")] public int? MaxSequenceLength { get; init; }
    /// <summary>Norm epsilon.</summary>
    [JsonPropertyName("layernorm_epsilon")] public float LayerNormEpsilon { get; init; } = 1e-5f;
    /// <summary>v2/v3: RMSNorm (true) or LayerNorm with bias.</summary>
    [JsonPropertyName("rmsnorm")] public bool RmsNorm { get; init; } = true;
    /// <summary>v2/v3: the fused QKV projection has a bias.</summary>
    [JsonPropertyName("add_qkv_bias")] public bool AddQkvBias { get; init; }
    /// <summary>v2/v3: the other linears have biases.</summary>
    [JsonPropertyName("add_bias_linear")] public bool AddBiasLinear { get; init; }
    /// <summary>v2/v3: a final norm before the LM head.</summary>
    [JsonPropertyName("post_layer_norm")] public bool PostLayerNorm { get; init; } = true;
    /// <summary>v2/v3: residuals taken from the normalised values.</summary>
    [JsonPropertyName("apply_residual_connection_post_layernorm")] public bool ApplyResidualConnectionPostLayerNorm { get; init; }
    /// <summary>v2/v3: RoPE stretch (see <see cref="ChatGlmRopeRatioMode"/>); absent = 1.</summary>
    [JsonPropertyName("rope_ratio")] public float RopeRatio { get; init; } = 1f;
    /// <summary>v1: 2D (position, block position) RoPE.</summary>
    [JsonPropertyName("position_encoding_2d")] public bool PositionEncoding2D { get; init; } = true;
    /// <summary>v1: <c>[MASK]</c> id.</summary>
    [JsonPropertyName("mask_token_id")] public int? MaskTokenId { get; init; }
    /// <summary>v1: <c>[gMASK]</c> id.</summary>
    [JsonPropertyName("gmask_token_id")] public int? GMaskTokenId { get; init; }
    /// <summary>bos (<c>&lt;sop&gt;</c> in v1).</summary>
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }
    /// <summary>eos id(s).</summary>
    [JsonPropertyName("eos_token_id")] public int[] EosTokenIds { get; init; } = Array.Empty<int>();
    /// <summary>pad id.</summary>
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; }
    /// <summary>THUDM's own int4/int8 packing (chatglm-6b-int4, chatglm2-6b-int4); unsupported when non-zero.</summary>
    [JsonPropertyName("quantization_bit")] public int QuantizationBit { get; init; }
    /// <summary>v2/v3 prefix tuning length; unsupported when set.</summary>
    [JsonPropertyName("pre_seq_len")] public int? PreSeqLen { get; init; }

    /// <summary>Per-head width.</summary>
    public int HeadDim => KvChannelsField ?? HiddenSize / NumAttentionHeads;
    /// <summary>K/V heads actually stored in the cache.</summary>
    public int KvHeads => Variant == ChatGlmVariant.V2 && MultiQueryAttention ? MultiQueryGroupNum : NumAttentionHeads;
    /// <summary>Logits width.</summary>
    public int VocabSize => (Variant == ChatGlmVariant.V2 ? PaddedVocabSize : VocabSizeField) ?? 0;
    /// <summary>MLP width.</summary>
    public int FfnSize => (Variant == ChatGlmVariant.V2 ? FfnHiddenSize : InnerHiddenSize) ?? 4 * HiddenSize;
    /// <summary>The longest sequence the position table covers.</summary>
    public int MaxPositions => (Variant == ChatGlmVariant.V2 ? SeqLength : MaxSequenceLength) ?? 2048;

    /// <summary>True when the config is v1 (ChatGLM-6B): it has v1-only keys or lacks <c>padded_vocab_size</c>.</summary>
    public static bool IsV1(JsonObject json) =>
        json["position_encoding_2d"] is not null || json["inner_hidden_size"] is not null || json["padded_vocab_size"] is null;

    /// <summary>Parses and validates a config; every problem is a <see cref="ConfigException"/> naming the field.</summary>
    public static ChatGlmConfig Parse(JsonObject json, string path)
    {
        var r = new ConfigReader(json, path);
        var variant = IsV1(json) ? ChatGlmVariant.V1 : ChatGlmVariant.V2;
        var c = new ChatGlmConfig
        {
            Variant = variant,
            HiddenSize = r.Positive("hidden_size"),
            NumLayers = r.Positive("num_layers"),
            NumAttentionHeads = r.Positive("num_attention_heads"),
            KvChannelsField = r.IntOrNull("kv_channels"),
            MultiQueryAttention = r.Bool("multi_query_attention", false),
            MultiQueryGroupNum = r.Int("multi_query_group_num", 1),
            FfnHiddenSize = r.IntOrNull("ffn_hidden_size"),
            InnerHiddenSize = r.IntOrNull("inner_hidden_size"),
            PaddedVocabSize = r.IntOrNull("padded_vocab_size"),
            VocabSizeField = r.IntOrNull("vocab_size"),
            SeqLength = r.IntOrNull("seq_length"),
            MaxSequenceLength = r.IntOrNull("max_sequence_length"),
            LayerNormEpsilon = r.Float("layernorm_epsilon", 1e-5f),
            RmsNorm = r.Bool("rmsnorm", true),
            AddQkvBias = r.Bool("add_qkv_bias", false),
            AddBiasLinear = r.Bool("add_bias_linear", false),
            PostLayerNorm = r.Bool("post_layer_norm", true),
            ApplyResidualConnectionPostLayerNorm = r.Bool("apply_residual_connection_post_layernorm", false),
            RopeRatio = r.Float("rope_ratio", 1f),
            PositionEncoding2D = r.Bool("position_encoding_2d", true),
            MaskTokenId = r.IntOrNull("mask_token_id"),
            GMaskTokenId = r.IntOrNull("gmask_token_id"),
            BosTokenId = r.IntOrNull("bos_token_id"),
            EosTokenIds = r.Ints("eos_token_id"),
            PadTokenId = r.IntOrNull("pad_token_id"),
            PreSeqLen = r.IntOrNull("pre_seq_len"),
            QuantizationBit = r.Int("quantization_bit", 0),
        };
        c.Validate(r);
        return c;
    }

    private void Validate(ConfigReader r)
    {
        if (QuantizationBit != 0)
            throw new UnsupportedModelException($"{r.Path}: field 'quantization_bit' = {QuantizationBit}: THUDM's packed int{QuantizationBit} checkpoints are not supported; " +
                "export the float16 checkpoint (e.g. THUDM/chatglm2-6b rather than -int4) and compress with --weight-format int4|int8");
        if (KvChannelsField is int kv && kv <= 0) throw r.Error("kv_channels", $"must be positive, got {kv}");
        if (Variant == ChatGlmVariant.V1)
        {
            if (VocabSizeField is not > 0) throw r.Error("vocab_size", "ChatGLM-6B (v1) configs need a positive vocab_size");
            if (HiddenSize % NumAttentionHeads != 0)
                throw r.Error("num_attention_heads", $"must divide hidden_size {HiddenSize}, got {NumAttentionHeads}");
            if (!PositionEncoding2D)
                throw new UnsupportedModelException($"{r.Path}: field 'position_encoding_2d' is false; only ChatGLM-6B's 2D RoPE (true) is supported");
            if (HeadDim % 4 != 0) throw r.Error("hidden_size", $"hidden_size/num_attention_heads = {HeadDim} must be a multiple of 4 for 2D RoPE");
            if (MaskTokenId is null || GMaskTokenId is null || BosTokenId is null)
                throw r.Error(MaskTokenId is null ? "mask_token_id" : GMaskTokenId is null ? "gmask_token_id" : "bos_token_id",
                    "ChatGLM-6B (v1) needs mask_token_id, gmask_token_id and bos_token_id to build its 2D positions");
        }
        else
        {
            if (PaddedVocabSize is not > 0) throw r.Error("padded_vocab_size", "must be positive");
            if (FfnHiddenSize is not > 0) throw r.Error("ffn_hidden_size", "ChatGLM2/3 configs need a positive ffn_hidden_size");
            if (KvChannelsField is null && HiddenSize % NumAttentionHeads != 0)
                throw r.Error("kv_channels", "absent, and hidden_size is not a multiple of num_attention_heads");
            if (HeadDim % 4 != 0) throw r.Error("kv_channels", $"must be a multiple of 4 (half of each head rotates in pairs), got {HeadDim}");
            if (MultiQueryAttention && (MultiQueryGroupNum <= 0 || NumAttentionHeads % MultiQueryGroupNum != 0))
                throw r.Error("multi_query_group_num", $"must be positive and divide num_attention_heads {NumAttentionHeads}, got {MultiQueryGroupNum}");
            if (!(RopeRatio > 0)) throw r.Error("rope_ratio", $"must be positive, got {RopeRatio}");
            if (PreSeqLen is > 0)
                throw new UnsupportedModelException($"{r.Path}: field 'pre_seq_len' = {PreSeqLen}: P-tuning v2 prefix encoders are not supported; merge or drop the prefix and remove the field");
        }
    }
}
