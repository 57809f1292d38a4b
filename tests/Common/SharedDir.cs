using System.Runtime.CompilerServices;

namespace Hub.Tests;

/// <summary>Finds ../shared (beside the repo root) or HUB_SHARED_DIR; tests that need it are skipped with the reason when absent.</summary>
public static class SharedDir
{
    private static readonly Lazy<string?> _root = new(Find);

    /// <summary>The shared folder, or null.</summary>
    public static string? Root => _root.Value;

    /// <summary>The repo root (folder holding Hub.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>Path inside shared/; skips the calling test when shared/ or the path is absent.</summary>
    public static string Require(string relative)
    {
        Skip.If(Root is null, "../shared not found beside the repo root and HUB_SHARED_DIR not set: golden fixtures unavailable");
        var p = Path.Combine(Root!, relative);
        Skip.IfNot(File.Exists(p) || Directory.Exists(p), $"{p} is absent from shared/");
        return p;
    }

    private static string? Find()
    {
        var env = Environment.GetEnvironmentVariable("HUB_SHARED_DIR");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return Path.GetFullPath(env);
        var candidate = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
        return Directory.Exists(candidate) ? candidate : null;
    }

    private static string FindRepoRoot([CallerFilePath] string here = "")
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Hub.sln"))) dir = dir.Parent;
        if (dir is not null) return dir.FullName;
        return Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", ".."));
    }

    /// <summary>A fresh temporary folder, deleted by the caller (or left for the OS).</summary>
    public static string TempDir(string tag = "hub")
    {
        var d = Path.Combine(Path.GetTempPath(), $"{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(d);
        return d;
    }
}
