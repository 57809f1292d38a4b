using Hub.Models;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>
/// Aquila (v1) as FlagAI publishes it: <c>pytorch_model.bin</c> with Meta's parameter names (plain dict, OrderedDict or
/// <c>{"module": ...}</c>) beside a FlagAI <c>config.json</c> (<c>dim</c>, <c>n_heads</c>, ... and no <c>model_type</c>).
/// Presented as a Hugging Face LLaMA checkpoint: Aquila v1 is LLaMA's network (multi-head, RoPE base 10000), so the
/// config says <c>model_type</c> "llama" with <c>"hub_source_format": "flagai"</c>, and wq/wk keep the interleaved
/// RoPE order (<see cref="WeightLayout.InterleavedRope"/>).
/// </summary>
public static class FlagAiCheckpoint
{
    /// <summary>Opens the FlagAI folder <paramref name="dir"/>.</summary>
    public static ModelSource Open(string dir)
    {
        if (!Directory.Exists(dir)) throw new ModelFileNotFoundException(dir, "the model folder does not exist");
        var configPath = Path.Combine(dir, "config.json");
        var json = MetaCheckpoint.LoadJson(configPath);
        if (json["model_type"] is not null)
            throw new ConfigException(configPath, "model_type", "present: this is a Hugging Face config, not FlagAI's; load the folder as a Hugging Face model (--from hf)");
        var weights = CheckpointLoader.OpenFolder(dir);
        try
        {
            // FlagAI's Aquila v1 is multi-head and fixes the RoPE base at 10000 whatever the config says.
            var hp = MetaCheckpoint.ReadParams(json, configPath, weights, defaultMaxPositions: 2048, fixedTheta: 10000.0);
            if (json["n_kv_heads"] is not null && hp.KvHeads != hp.Heads)
                throw new ConfigException(configPath, "n_kv_heads", $"{hp.KvHeads} differs from n_heads {hp.Heads}; Aquila v1 has no grouped-query attention (use --from meta for a Meta-layout checkpoint)");
            var src = MetaLayout.Build(dir, new[] { weights }, hp, configPath);
            src.Own(weights);
            src.TryGetInfo("model.embed_tokens.weight", out var emb);
            int? bos = json["bos_token_id"] is not null ? MetaCheckpoint.Int(json, configPath, "bos_token_id") : null;
            int? eos = json["eos_token_id"] is not null ? MetaCheckpoint.Int(json, configPath, "eos_token_id") : null;
            var config = hp.ToHfConfig(emb.DType, bos, eos, "flagai");
            return new ModelSource { Directory = dir, Config = config, ConfigPath = configPath, Weights = src, Layout = WeightLayout.InterleavedRope };
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }
}
