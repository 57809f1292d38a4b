using Hub.Client;

namespace Hub;

/// <summary>
/// Turns what a user passes to <c>FromPretrained</c> (a local folder, a checkpoint file, or a hub repo id) into a
/// local path, downloading from the hub (or <c>HF_ENDPOINT</c>) only the files a model needs.
/// </summary>
public static class ModelLocator
{
    private static readonly string[] WeightPreference =
    [
        "model.safetensors", "model.safetensors.index.json", "*.safetensors",
        "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin",
        "consolidated.*.pth", "params.json",
    ];

    /// <summary>A local path for <paramref name="idOrPath"/>; hub ids are downloaded into the shared HF cache.</summary>
    public static string Resolve(string idOrPath, ModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(idOrPath);
        options ??= ModelOptions.Default;
        var sub = options.Subfolder?.Trim('/');
        if (Directory.Exists(idOrPath) || File.Exists(idOrPath))
        {
            var local = Path.GetFullPath(idOrPath);
            if (string.IsNullOrEmpty(sub)) return local;
            var inner = Path.Combine(local, sub);
            return Directory.Exists(inner) ? inner : throw new ModelFileNotFoundException(inner, $"subfolder '{sub}' does not exist in {local}");
        }
        if (!HubClient.LooksLikeRepoId(idOrPath))
            throw new ModelFileNotFoundException(idOrPath, "it is neither an existing local path nor a hub repo id of the form 'org/name'");
        return DownloadAsync(idOrPath, sub, options).GetAwaiter().GetResult();
    }

    private static async Task<string> DownloadAsync(string repoId, string? sub, ModelOptions options)
    {
        var clientOptions = HubClientOptions.FromEnvironment();
        if (options.Endpoint is not null) clientOptions.Endpoint = options.Endpoint.TrimEnd('/');
        if (options.Token is not null) clientOptions.Token = options.Token;
        if (options.HubCacheDir is not null) clientOptions.CacheDir = options.HubCacheDir;
        if (options.Offline) clientOptions.Offline = true;
        using var client = new HubClient(clientOptions);
        var prefix = string.IsNullOrEmpty(sub) ? "" : sub + "/";
        options.Progress?.Report($"resolving {repoId}{(prefix.Length > 0 ? "/" + sub : "")}");

        List<string> allow;
        if (clientOptions.Offline)
        {
            allow = DefaultPatterns(prefix, null);
        }
        else
        {
            var info = await client.ModelInfoAsync(repoId, options.Revision).ConfigureAwait(false);
            allow = DefaultPatterns(prefix, info.Siblings.Select(s => s.RFilename).ToList());
        }
        var snapshot = await client.SnapshotDownloadAsync(repoId, options.Revision, allow, null, null).ConfigureAwait(false);
        var path = string.IsNullOrEmpty(sub) ? snapshot : Path.Combine(snapshot, sub);
        if (!Directory.Exists(path)) throw new ModelFileNotFoundException(path, $"subfolder '{sub}' is not in {repoId}");
        return path;
    }

    /// <summary>Config, tokenizer files and the weights in the best format the repo offers (safetensors first).</summary>
    internal static List<string> DefaultPatterns(string prefix, IReadOnlyList<string>? files)
    {
        var allow = new List<string>
        {
            prefix + "*.json", prefix + "tokenizer.model", prefix + "*.txt", prefix + "tok*.bin",
            prefix + "1_Pooling/*", prefix + "2_Normalize/*",
        };
        if (files is null)
        {
            allow.AddRange(WeightPreference.Select(p => prefix + p));
            allow.Add(prefix + "*.bin");
            return allow;
        }
        var inFolder = files.Where(f => f.StartsWith(prefix, StringComparison.Ordinal) && !f[prefix.Length..].Contains('/'))
                            .Select(f => f[prefix.Length..]).ToList();
        if (inFolder.Any(f => f.EndsWith(".safetensors", StringComparison.Ordinal)))
            allow.Add(prefix + "*.safetensors");
        else if (inFolder.Any(f => f.StartsWith("pytorch_model", StringComparison.Ordinal) && f.EndsWith(".bin", StringComparison.Ordinal)))
            allow.Add(prefix + "pytorch_model*.bin");
        else if (inFolder.Any(f => f.StartsWith("consolidated.", StringComparison.Ordinal)))
            allow.Add(prefix + "consolidated.*.pth");
        else
            allow.Add(prefix + "*.bin"); // llama2.c checkpoints (and their tok*.bin tokenizers)
        return allow;
    }
}
