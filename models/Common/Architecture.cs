using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Models;

/// <summary>What a model does; decides which public class (<c>CausalLM</c>, <c>SequenceClassifier</c>, ...) serves it.</summary>
public enum ModelTask
{
    /// <summary>Next-token prediction with a KV cache.</summary>
    CausalLM,
    /// <summary>Sequence classification / regression.</summary>
    SequenceClassification,
    /// <summary>Hidden states for embeddings (feature extraction).</summary>
    TextEncoder,
    /// <summary>Click-through-rate prediction.</summary>
    Ctr,
}

/// <summary>How the checkpoint's weights are laid out relative to Hugging Face's layout for the architecture.</summary>
public enum WeightLayout
{
    /// <summary>The Hugging Face layout: used as is.</summary>
    HuggingFace,
    /// <summary>Meta/llama2.c/FlagAI: wq/wk rows are in interleaved-pair RoPE order and must be permuted per head.</summary>
    InterleavedRope,
}

/// <summary>A checkpoint ready to be turned into IR: its HF-style config, its tensors and where it came from.</summary>
public sealed class ModelSource
{
    /// <summary>The folder (tokenizer and generation files are looked up here).</summary>
    public required string Directory { get; init; }
    /// <summary>HF-style config (for original layouts, the converter's translation).</summary>
    public required JsonObject Config { get; init; }
    /// <summary>The file the config came from, for error messages.</summary>
    public required string ConfigPath { get; init; }
    /// <summary>The tensors, named as in HF checkpoints of the architecture.</summary>
    public required ITensorSource Weights { get; init; }
    /// <summary>Layout of the tensors.</summary>
    public WeightLayout Layout { get; init; } = WeightLayout.HuggingFace;
}

/// <summary>Options that change the exported graph itself.</summary>
public sealed class ExportSettings
{
    /// <summary>Default settings.</summary>
    public static readonly ExportSettings Default = new();
}

/// <summary>
/// One architecture: recognizes its configs and builds the IR graph plus weight map. A new architecture is one folder
/// under models/ with an implementation of this interface, plus one line in <see cref="ModelRegistry"/>.
/// </summary>
public interface IModelArchitecture
{
    /// <summary>Short name (gpt2, llama, bert, chatglm).</summary>
    string Name { get; }

    /// <summary>True when this architecture handles the config (by <c>model_type</c> / <c>architectures</c>).</summary>
    bool Matches(JsonObject config);

    /// <summary>The task the config asks for (e.g. <c>BertForSequenceClassification</c> → classification).</summary>
    ModelTask TaskOf(JsonObject config);

    /// <summary>Builds the graph and the weight map; reads tensor metadata only, never tensor data.</summary>
    ModelExport Build(ModelSource source, ExportSettings settings);
}

/// <summary>The registered architectures, in match order.</summary>
public static class ModelRegistry
{
    private static readonly List<IModelArchitecture> _all = new()
    {
        new Gpt2.Gpt2Architecture(),
        new Llama.LlamaArchitecture(),
        new ChatGlm.ChatGlmArchitecture(),
        new Bert.BertArchitecture(),
    };

    /// <summary>All registered architectures.</summary>
    public static IReadOnlyList<IModelArchitecture> All => _all;

    /// <summary>Adds an architecture (for plugins); later registrations win.</summary>
    public static void Register(IModelArchitecture arch) => _all.Insert(0, arch);

    /// <summary>The architecture for <paramref name="config"/>, or an <see cref="UnsupportedModelException"/> listing what is supported.</summary>
    public static IModelArchitecture Resolve(JsonObject config, string configPath)
    {
        foreach (var a in _all)
            if (a.Matches(config)) return a;
        var mt = (string?)config["model_type"] ?? "(none)";
        var archs = config["architectures"]?.ToJsonString() ?? "(none)";
        throw new UnsupportedModelException(
            $"{configPath}: model_type '{mt}', architectures {archs} is not supported; supported: {string.Join(", ", _all.Select(a => a.Name))}");
    }
}
