using Hub.Models;

namespace Hub.Converters;

/// <summary>
/// Turns a user's path (a model folder or a llama2.c .bin) into a <see cref="ModelSource"/>, recognizing the layout
/// (Hugging Face, Meta original, llama2.c, FlagAI/Aquila) or honouring an explicit <c>--from</c>.
/// </summary>
public static class SourceDetector
{
    /// <summary>The accepted values of <c>from</c>.</summary>
    public static IReadOnlyList<string> Formats { get; } = new[] { "hf", "meta", "llama2c", "aquila" };

    /// <summary>Opens <paramref name="input"/> as <paramref name="from"/> (hf|meta|llama2c|aquila), or detects the layout when null.</summary>
    public static ModelSource Detect(string input, string? from = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (from is not null)
        {
            return from.ToLowerInvariant() switch
            {
                "hf" or "huggingface" => OpenHf(RequireDir(input, "hf")),
                "meta" => MetaCheckpoint.Open(RequireDir(input, "meta")),
                "llama2c" or "llama2.c" => Llama2cCheckpoint.Open(File.Exists(input) ? input : SingleLlama2cBin(input)
                    ?? throw new UnsupportedModelException($"{input}: --from llama2c needs a llama2.c .bin file, or a folder with exactly one; found {Listing(input)}")),
                "aquila" or "flagai" => FlagAiCheckpoint.Open(RequireDir(input, "aquila")),
                _ => throw new UnsupportedModelException($"source format '{from}' is unknown; use one of {string.Join(", ", Formats)}"),
            };
        }

        if (File.Exists(input))
        {
            if (Llama2cCheckpoint.LooksLikeLlama2c(input)) return Llama2cCheckpoint.Open(input);
            throw new UnsupportedModelException($"{input}: a single file is accepted only as a llama2.c checkpoint, and its header does not match one " +
                "(pass the model folder for Hugging Face, Meta or FlagAI layouts, or --from llama2c to see the header error)");
        }
        if (!Directory.Exists(input)) throw new ModelFileNotFoundException(input, "no such file or folder");

        var config = Path.Combine(input, "config.json");
        if (File.Exists(config))
        {
            var json = MetaCheckpoint.LoadJson(config);
            // Very old hub configs lack model_type but name their architectures; transformers accepts both.
            if (json["model_type"] is not null || json["architectures"] is not null) return OpenHf(input);
            if (json["dim"] is not null && json["n_heads"] is not null) return FlagAiCheckpoint.Open(input);
        }
        if (File.Exists(Path.Combine(input, "params.json")) && Directory.EnumerateFiles(input, "consolidated.*.pth").Any())
            return MetaCheckpoint.Open(input);
        if (SingleLlama2cBin(input) is string bin) return Llama2cCheckpoint.Open(bin);

        throw new UnsupportedModelException(
            $"{input}: cannot tell the checkpoint layout. Looked for config.json with model_type (Hugging Face), params.json + consolidated.NN.pth (Meta), " +
            $"config.json with dim/n_heads and no model_type (FlagAI Aquila), or one llama2.c .bin; the folder has {Listing(input)}. Pass --from {string.Join("|", Formats)} to choose.");
    }

    private static ModelSource OpenHf(string dir)
    {
        var configPath = Path.Combine(dir, "config.json");
        var json = ConfigReader.Load(configPath);
        return new ModelSource { Directory = dir, Config = json, ConfigPath = configPath, Weights = CheckpointLoader.OpenFolder(dir), Layout = WeightLayout.HuggingFace };
    }

    private static string RequireDir(string input, string from) =>
        Directory.Exists(input) ? input : throw new ModelFileNotFoundException(input, $"--from {from} needs a model folder");

    private static string? SingleLlama2cBin(string dir)
    {
        if (!Directory.Exists(dir)) return null;
        var bins = Directory.EnumerateFiles(dir, "*.bin").Where(Llama2cCheckpoint.LooksLikeLlama2c).ToList();
        return bins.Count == 1 ? bins[0] : null;
    }

    private static string Listing(string dir)
    {
        if (!Directory.Exists(dir)) return "nothing (not a folder)";
        var items = Directory.EnumerateFileSystemEntries(dir).Select(p => Path.GetFileName(p) + (Directory.Exists(p) ? "/" : ""))
            .OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (items.Count == 0) return "nothing (empty folder)";
        return string.Join(", ", items.Take(25)) + (items.Count > 25 ? $" and {items.Count - 25} more" : "");
    }
}
