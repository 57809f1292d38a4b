// ChatGLM family registration: model_type "chatglm" covers ChatGLM-6B (v1) and ChatGLM2-6B / ChatGLM3-6B (v2/v3, also
// GLM-4's graph), all published with trust_remote_code modeling files that Hub never runs: the graphs are rebuilt from
// THUDM's modeling_chatglm.py (v1: THUDM/chatglm-6b; v2/v3: THUDM/chatglm2-6b, THUDM/chatglm3-6b).
using System.Text.Json.Nodes;
using Hub.IR;

namespace Hub.Models.ChatGlm;

/// <summary>The ChatGLM architectures (v1 and v2/v3), chosen from the config by <see cref="ChatGlmConfig.IsV1"/>.</summary>
public sealed class ChatGlmArchitecture : IModelArchitecture
{
    private static readonly string[] ArchitectureNames = { "ChatGLMModel", "ChatGLMForConditionalGeneration" };

    /// <summary>How v2/v3 configs' <c>rope_ratio</c> is applied.</summary>
    public ChatGlmRopeRatioMode RopeRatioMode { get; }

    /// <summary>
    /// The architecture. <paramref name="ropeRatioMode"/> defaults to ChatGLM3's rule (base × rope_ratio); register an
    /// instance with <see cref="ChatGlmRopeRatioMode.DividePositions"/> (<see cref="ModelRegistry.Register"/>) to export
    /// ChatGLM2-6B-32k, whose code divides positions by rope_ratio instead; the config cannot tell the two apart.
    /// </summary>
    public ChatGlmArchitecture(ChatGlmRopeRatioMode ropeRatioMode = ChatGlmRopeRatioMode.ScaleBase) => RopeRatioMode = ropeRatioMode;

    /// <inheritdoc/>
    public string Name => "chatglm";

    /// <inheritdoc/>
    public bool Matches(JsonObject config)
    {
        if ((string?)config["model_type"] == "chatglm") return true;
        return config["architectures"] is JsonArray a &&
               a.Any(x => x is JsonValue v && v.TryGetValue<string>(out var s) && ArchitectureNames.Contains(s));
    }

    /// <inheritdoc/>
    public ModelTask TaskOf(JsonObject config) => ModelTask.CausalLM;

    /// <inheritdoc/>
    public ModelExport Build(ModelSource source, ExportSettings settings)
    {
        var config = ChatGlmConfig.Parse(source.Config, source.ConfigPath);
        return config.Variant == ChatGlmVariant.V1
            ? ChatGlm1Graph.Build(config, source.Weights)
            : ChatGlm2Graph.Build(config, source.Weights, RopeRatioMode);
    }

    /// <summary>Metadata every ChatGLM graph carries (see docs/model-graphs.md).</summary>
    internal static void CommonMetadata(GraphBuilder g, ChatGlmConfig c, string positions)
    {
        g.Metadata["task"] = "causal_lm";
        g.Metadata["vocab_size"] = c.VocabSize;
        g.Metadata["max_position_embeddings"] = c.MaxPositions;
        g.Metadata["positions"] = positions;
        g.Metadata["chatglm_version"] = (int)c.Variant;
        if (c.BosTokenId is int bos) g.Metadata["bos_token_id"] = bos;
        if (c.EosTokenIds.Length == 1) g.Metadata["eos_token_id"] = c.EosTokenIds[0];
        else if (c.EosTokenIds.Length > 1) g.Metadata["eos_token_id"] = new JsonArray(c.EosTokenIds.Select(e => (JsonNode)e).ToArray());
        if (c.PadTokenId is int pad) g.Metadata["pad_token_id"] = pad;
    }
}
