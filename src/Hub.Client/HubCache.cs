using System.Text.RegularExpressions;

namespace Hub.Client;

/// <summary>
/// The huggingface_hub cache layout (file_download.py): <c>{cache}/models--org--name/{blobs,snapshots,refs,.no_exist}</c>
/// and <c>{cache}/.locks/models--org--name/{etag}.lock</c>, with snapshot files as relative symlinks to blobs
/// (a move/copy where symlinks are impossible), so Python and C# processes share one cache.
/// </summary>
public sealed partial class HubCache
{
    /// <summary>Where our own listing of a commit's files is kept (not read by huggingface_hub, ignored by its cache scan).</summary>
    internal const string ManifestFolder = ".hub_manifests";

    /// <summary>The cache root.</summary>
    public string Root { get; }

    private readonly Lazy<bool> _symlinks;

    /// <summary>Opens (does not create) the cache at <paramref name="root"/>.</summary>
    public HubCache(string root)
    {
        Root = Path.GetFullPath(root);
        _symlinks = new Lazy<bool>(ProbeSymlinks);
    }

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitRegex();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256Regex();

    /// <summary>True for a full 40-hex commit sha (the only revisions that skip the network when cached).</summary>
    public static bool IsCommitHash(string revision) => CommitRegex().IsMatch(revision);

    /// <summary>True for a 64-hex sha256, i.e. the etag of an LFS file.</summary>
    public static bool IsSha256(string etag) => Sha256Regex().IsMatch(etag);

    /// <summary><c>models--org--name</c>.</summary>
    public static string RepoFolderName(string repoId, string repoType = "model") => repoType + "s--" + repoId.Replace("/", "--", StringComparison.Ordinal);

    /// <summary>The repo's storage folder.</summary>
    public string RepoDir(string repoId) => Path.Combine(Root, RepoFolderName(repoId));

    /// <summary><c>blobs/{etag}</c>.</summary>
    public string BlobPath(string repoId, string etag) => Path.Combine(RepoDir(repoId), "blobs", etag);

    /// <summary><c>.locks/{repo_folder}/{etag}.lock</c>.</summary>
    public string LockPath(string repoId, string etag) => Path.Combine(Root, ".locks", RepoFolderName(repoId), etag + ".lock");

    /// <summary><c>snapshots/{commit}</c>.</summary>
    public string SnapshotDir(string repoId, string commit) => Path.Combine(RepoDir(repoId), "snapshots", commit);

    /// <summary><c>snapshots/{commit}/{path}</c>; the path must stay inside the snapshot (traversal guard).</summary>
    public string PointerPath(string repoId, string commit, string filename)
    {
        var snap = SnapshotDir(repoId, commit);
        var p = Path.GetFullPath(Path.Combine(snap, filename));
        if (!p.StartsWith(snap + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new ArgumentException($"'{filename}' would be written outside the snapshot folder {snap}; repo file names must be relative paths without '..'.", nameof(filename));
        return p;
    }

    /// <summary><c>.no_exist/{commit}/{path}</c>.</summary>
    public string NoExistPath(string repoId, string commit, string filename) => Path.Combine(RepoDir(repoId), ".no_exist", commit, filename);

    /// <summary><c>refs/{revision}</c> (<c>refs/pr/1</c> nests as <c>refs/refs/pr/1</c>).</summary>
    public string RefPath(string repoId, string revision) => Path.Combine(RepoDir(repoId), "refs", revision);

    /// <summary>The commit a revision resolves to in the cache: itself if it is a commit, else the content of <c>refs/{revision}</c>.</summary>
    public string? ResolveCommit(string repoId, string revision)
    {
        if (IsCommitHash(revision)) return revision;
        var r = RefPath(repoId, revision);
        try
        {
            if (!File.Exists(r)) return null;
            var c = File.ReadAllText(r).Trim();
            return IsCommitHash(c) ? c : null;
        }
        catch (IOException) { return null; }
    }

    /// <summary>Age of <c>refs/{revision}</c> (its last write), or null when absent.</summary>
    public TimeSpan? RefAge(string repoId, string revision)
    {
        var r = RefPath(repoId, revision);
        if (!File.Exists(r)) return null;
        return DateTime.UtcNow - File.GetLastWriteTimeUtc(r);
    }

    /// <summary>Records <c>refs/{revision}</c> = commit (atomically; also refreshes its time so the TTL restarts).</summary>
    public void WriteRef(string repoId, string revision, string commit)
    {
        if (revision == commit) return;
        var r = RefPath(repoId, revision);
        try
        {
            if (File.Exists(r) && File.ReadAllText(r).Trim() == commit)
            {
                File.SetLastWriteTimeUtc(r, DateTime.UtcNow);
                return;
            }
            WriteAtomic(r, commit);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Writes the empty <c>.no_exist</c> marker.</summary>
    public void WriteNoExist(string repoId, string commit, string filename)
    {
        try
        {
            var p = NoExistPath(repoId, commit, filename);
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);
            if (!File.Exists(p)) File.WriteAllBytes(p, []);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Outcome of a cache lookup.</summary>
    public enum LookupResult
    {
        /// <summary>Nothing known.</summary>
        Unknown,
        /// <summary>The file is cached.</summary>
        Found,
        /// <summary>The file is known not to exist at that commit (<c>.no_exist</c>).</summary>
        KnownMissing,
    }

    /// <summary>huggingface_hub's try_to_load_from_cache: resolves the ref, checks <c>.no_exist</c>, then the snapshot; never another revision.</summary>
    public LookupResult Lookup(string repoId, string filename, string revision, out string? path)
    {
        path = null;
        var commit = ResolveCommit(repoId, revision);
        if (commit is null) return LookupResult.Unknown;
        string pointer;
        try { pointer = PointerPath(repoId, commit, filename); }
        catch (ArgumentException) { return LookupResult.Unknown; }
        if (File.Exists(pointer)) { path = pointer; return LookupResult.Found; }
        if (File.Exists(NoExistPath(repoId, commit, filename))) return LookupResult.KnownMissing;
        return LookupResult.Unknown;
    }

    /// <summary>Manifest path for a commit.</summary>
    internal string ManifestPath(string repoId, string commit) => Path.Combine(RepoDir(repoId), ManifestFolder, commit + ".json");

    /// <summary>Saves the model info of a commit, so later loads of that commit can check completeness offline.</summary>
    internal void WriteManifest(string repoId, string commit, ModelInfo info)
    {
        try { WriteAtomic(ManifestPath(repoId, commit), info.ToJson()); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>The saved model info of a commit, or null.</summary>
    internal ModelInfo? ReadManifest(string repoId, string commit)
    {
        var p = ManifestPath(repoId, commit);
        try { return File.Exists(p) ? ModelInfo.Parse(File.ReadAllText(p), repoId) : null; }
        catch (HubException) { return null; }
        catch (IOException) { return null; }
    }

    /// <summary>
    /// Makes <paramref name="pointer"/> refer to <paramref name="blob"/>: a relative symlink (as os.path.relpath gives),
    /// or, without symlink support, a move of a new blob / copy of an existing one.
    /// </summary>
    public void LinkPointer(string blob, string pointer, bool newBlob)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(pointer)!);
        var rel = Path.GetRelativePath(Path.GetDirectoryName(pointer)!, blob);
        if (_symlinks.Value)
        {
            var tmp = pointer + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
            File.CreateSymbolicLink(tmp, rel);
            try { File.Move(tmp, pointer, overwrite: true); }
            catch { TryDelete(tmp); throw; }
            return;
        }
        if (newBlob) File.Move(blob, pointer, overwrite: true);
        else
        {
            var tmp = pointer + ".incomplete";
            File.Copy(blob, tmp, overwrite: true);
            File.Move(tmp, pointer, overwrite: true);
        }
    }

    private bool ProbeSymlinks()
    {
        try
        {
            Directory.CreateDirectory(Root);
            var dir = Path.Combine(Root, ".symlink-probe-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.CreateDirectory(dir);
            try
            {
                File.WriteAllText(Path.Combine(dir, "src"), "");
                File.CreateSymbolicLink(Path.Combine(dir, "dst"), "src");
                return File.Exists(Path.Combine(dir, "dst"));
            }
            finally { Directory.Delete(dir, recursive: true); }
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>Write to a temporary name beside the target, then rename, so readers never see half a file.</summary>
    internal static void WriteAtomic(string path, string content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = path + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        File.WriteAllText(tmp, content);
        try { File.Move(tmp, path, overwrite: true); }
        catch { TryDelete(tmp); throw; }
    }

    internal static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
