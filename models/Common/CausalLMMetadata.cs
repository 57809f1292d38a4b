using System.Text.Json.Nodes;

namespace Hub.Models;

/// <summary>Fills the graph metadata every causal LM carries (docs/model-graphs.md).</summary>
public static class CausalLMMetadata
{
    /// <summary>Writes task, vocab size, context, position scheme and the special ids the config declares.</summary>
    public static void Fill(JsonObject meta, ConfigReader config, int vocabSize, int maxPositions, string positions)
    {
        meta["task"] = "causal_lm";
        meta["vocab_size"] = vocabSize;
        meta["max_position_embeddings"] = maxPositions;
        meta["positions"] = positions;
        foreach (var key in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
            if (config.Json[key] is JsonNode n) meta[key] = n.DeepClone();
    }
}
