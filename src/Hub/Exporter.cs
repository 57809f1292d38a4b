using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Hub.Converters;
using Hub.Converters.Compression;
using Hub.IR;
using Hub.Models;

namespace Hub;

/// <summary>
/// The export pipeline (optimum's <c>export=True</c>): detect the checkpoint layout, build the architecture's graph,
/// stream the weights into IR one tensor at a time, copy the config and tokenizer files beside it.
/// </summary>
public static class Exporter
{
    /// <summary>Files copied from the source folder into an exported model (tokenizers, generation and pooling configs).</summary>
    private static readonly string[] AuxFiles =
    [
        "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "modules.json", "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ];

    private static readonly string[] AuxFolders = ["1_Pooling", "2_Normalize"];

    /// <summary>
    /// Converts the checkpoint at <paramref name="sourcePath"/> into an IR folder at <paramref name="outDir"/>.
    /// Everything is written into a temporary sibling folder and moved into place at the end, so an interrupted
    /// export never leaves a folder that a later load would pick up.
    /// </summary>
    /// <returns>The architecture name and graph that were written.</returns>
    public static (string Architecture, Graph Graph) Export(string sourcePath, string outDir, ModelOptions? options = null)
    {
        options ??= ModelOptions.Default;
        options.CompressionOptions(); // validate before any work
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() && !IrModel.Exists(outDir))
            throw new HubException($"{outDir} exists and is not an exported model; choose an empty or new output folder");
        var parent = Path.GetDirectoryName(outDir)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(outDir)}.tmp-{Guid.NewGuid():N}");
        try
        {
            string arch;
            Graph graph;
            var source = SourceDetector.Detect(sourcePath, options.SourceFormat);
            try
            {
                var architecture = ModelRegistry.Resolve(source.Config, source.ConfigPath);
                arch = architecture.Name;
                options.Progress?.Report($"converting {sourcePath} ({arch})");
                var export = architecture.Build(source, ExportSettings.Default);
                export.Graph.Metadata["architecture"] = arch;
                export.Graph.Metadata["source"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(sourcePath));
                export.Graph.Metadata["weight_format"] = options.WeightFormat.ToString().ToLowerInvariant();
                WeightCompressor? compressor = null;
                if (options.CompressionOptions(export.Graph) is { } co)
                {
                    compressor = new WeightCompressor(co, options.Progress);
                    export.Graph.Metadata["quantization"] = new System.Text.Json.Nodes.JsonObject
                    {
                        ["scheme"] = co.Scheme,
                        ["group_size"] = co.EffectiveGroupSize,
                        ["symmetric"] = co.EffectiveSymmetric,
                        ["all_layers"] = co.AllLayers,
                        ["ignored_scope"] = new System.Text.Json.Nodes.JsonArray(co.IgnoredScope.Select(p => (System.Text.Json.Nodes.JsonNode)p).ToArray()),
                    };
                }
                graph = IrFormat.Write(tmp, export, new IrWriteOptions { WeightDType = options.IrDType, Encoder = compressor is null ? null : compressor.Encode });
                if (compressor is not null) options.Progress?.Report($"weight compression: {compressor.Summary()}");
                File.WriteAllText(Path.Combine(tmp, "config.json"), source.Config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                CopyAuxFiles(source.Directory, tmp);
            }
            finally
            {
                source.Weights.Dispose();
            }
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
            Directory.Move(tmp, outDir);
            return (arch, graph);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }

    /// <summary>
    /// The cached export of <paramref name="sourcePath"/> under the export cache, creating it when absent. The key
    /// covers the IR version, the options that change the export, and every source file's name, size and timestamp
    /// (hub snapshots are immutable per commit, so this is content-keyed for them).
    /// </summary>
    public static string GetOrCreateCached(string sourcePath, ModelOptions options)
    {
        var key = CacheKey(sourcePath, options);
        var dir = Path.Combine(options.ExportCacheRoot, key);
        if (IrModel.Exists(dir)) return dir;
        Directory.CreateDirectory(options.ExportCacheRoot);
        // A lock file serializes concurrent exports of the same model across processes.
        using var lockStream = AcquireLock(dir + ".lock");
        if (IrModel.Exists(dir)) return dir;
        Export(sourcePath, dir, options);
        return dir;
    }

    /// <summary>
    /// The cached export of <paramref name="sourcePath"/> made with <paramref name="options"/>, when one exists (nothing
    /// is exported): lets a caller that accepts several precisions reuse whichever export is already there.
    /// </summary>
    public static bool TryGetCached(string sourcePath, ModelOptions options, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? dir)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentNullException.ThrowIfNull(options);
        dir = null;
        if (!File.Exists(sourcePath) && !Directory.Exists(sourcePath)) return false; // nothing to key a cache entry on
        dir = Path.Combine(options.ExportCacheRoot, CacheKey(sourcePath, options));
        if (IrModel.Exists(dir)) return true;
        dir = null;
        return false;
    }

    private static FileStream AcquireLock(string path)
    {
        for (int attempt = 0; ; attempt++)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose); }
            catch (IOException) when (attempt < 6000) { Thread.Sleep(100); }
        }
    }

    internal static string CacheKey(string sourcePath, ModelOptions options)
    {
        var sb = new StringBuilder();
        sb.Append("hub-ir-v").Append(Graph.CurrentVersion).Append('|').Append(options.WeightFormat).Append('|').Append(options.SourceFormat).Append('|');
        if (options.IsQuantized)
            sb.Append("g=").Append(options.GroupSize?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "default")
              .Append("|sym=").Append(options.Symmetric?.ToString() ?? "default").Append("|all=").Append(options.AllLayers)
              .Append("|ignored=").Append(string.Join('\u001f', options.IgnoredScope))
              // F16 scales since session 4: exports cached with F32 scales are not served again (they still load)
              .Append("|scales=f16|");
        var full = Path.GetFullPath(sourcePath);
        IEnumerable<string> files = File.Exists(full) ? [full] : Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal);
        foreach (var f in files)
        {
            var fi = new FileInfo(f);
            if (fi.Name.StartsWith('.')) continue;
            // an IR folder used as a source: the runtime's weight cache is derived data, written after the export
            if (Path.GetRelativePath(full, f).StartsWith(IrFormat.CacheFolder + Path.DirectorySeparatorChar, StringComparison.Ordinal)) continue;
            // ResolveLinkTarget: hub snapshots are symlinks to content-addressed blobs; the blob name is the content hash.
            var target = fi.LinkTarget is not null ? fi.ResolveLinkTarget(true)?.FullName ?? f : f;
            var tfi = new FileInfo(target);
            sb.Append(Path.GetRelativePath(full, f)).Append(':').Append(tfi.Length).Append(':').Append(tfi.LastWriteTimeUtc.Ticks).Append(':').Append(Path.GetFileName(target)).Append('|');
        }
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..24];
        var name = new string(Path.GetFileName(Path.TrimEndingDirectorySeparator(full)).Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
        return $"{name}-{hash}";
    }

    private static void CopyAuxFiles(string sourceDir, string dest)
    {
        if (!Directory.Exists(sourceDir)) return;
        foreach (var name in AuxFiles)
        {
            var p = Path.Combine(sourceDir, name);
            if (File.Exists(p)) File.Copy(p, Path.Combine(dest, name), overwrite: true);
        }
        foreach (var tok in Directory.EnumerateFiles(sourceDir, "tok*.bin"))
            File.Copy(tok, Path.Combine(dest, Path.GetFileName(tok)), overwrite: true);
        foreach (var folder in AuxFolders)
        {
            var src = Path.Combine(sourceDir, folder);
            if (!Directory.Exists(src)) continue;
            Directory.CreateDirectory(Path.Combine(dest, folder));
            foreach (var f in Directory.EnumerateFiles(src))
                File.Copy(f, Path.Combine(dest, folder, Path.GetFileName(f)), overwrite: true);
        }
    }
}
