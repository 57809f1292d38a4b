using Hub.Weights;

namespace Hub.Converters;

/// <summary>Opens the weights of a Hugging Face model folder, choosing the file as transformers does.</summary>
public static class CheckpointLoader
{
    /// <summary>The files looked for, in order of preference (safetensors first, as transformers prefers it).</summary>
    public static IReadOnlyList<string> WeightFileNames { get; } = new[]
    {
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    };

    /// <summary>The weights in <paramref name="dir"/>; <see cref="ModelFileNotFoundException"/> listing what was
    /// looked for and what the folder holds when there are none.</summary>
    public static ITensorSource OpenFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new ModelFileNotFoundException(dir, "the model folder does not exist");
        foreach (var name in WeightFileNames)
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return OpenFile(p);
        }
        var present = Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal).Take(20).ToList();
        throw new ModelFileNotFoundException(Path.Combine(dir, WeightFileNames[0]),
            $"no weights in {dir}: looked for {string.Join(", ", WeightFileNames)}; the folder has {(present.Count == 0 ? "nothing" : string.Join(", ", present))}. " +
            "Download the weights too, or pass the original layout (--from meta|llama2c|aquila) if it is not a Hugging Face folder");
    }

    /// <summary>Opens one weights file by its kind: <c>*.safetensors</c>, <c>*.index.json</c>, else a torch zip.</summary>
    public static ITensorSource OpenFile(string path)
    {
        if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return ShardedCheckpoint.Open(path);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return SafetensorsFile.Open(path);
        return TorchCheckpoint.Open(path);
    }
}
