using System.Text.Json.Nodes;
using Hub.IR;

namespace Hub.Models.Gpt2;

/// <summary>GPT-2 (placeholder until the builder lands).</summary>
public sealed class Gpt2Architecture : IModelArchitecture
{
    /// <inheritdoc/>
    public string Name => "gpt2";
    /// <inheritdoc/>
    public bool Matches(JsonObject config) => (string?)config["model_type"] == "gpt2";
    /// <inheritdoc/>
    public ModelTask TaskOf(JsonObject config) => ModelTask.CausalLM;
    /// <inheritdoc/>
    public ModelExport Build(ModelSource source, ExportSettings settings) => throw new NotImplementedException();
}
