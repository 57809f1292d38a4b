using System.Security.Cryptography;
using System.Text;

namespace Hub.Mirror;

/// <summary>A file of a served repo with the identities the hub protocol needs.</summary>
internal sealed record RepoFile(string Path, string FullPath, long Size, string Sha256, string GitSha1, bool IsLfs)
{
    public string Etag => IsLfs ? Sha256 : GitSha1;
}

/// <summary>A repo folder at its current content; <see cref="Commit"/> is derived from the content so it is stable across restarts.</summary>
internal sealed record RepoSnapshot(string Id, string Dir, string Commit, IReadOnlyDictionary<string, RepoFile> Files, DateTime LastModified);

/// <summary>Finds repo folders under the root and hashes their files once (re-hashing only files whose size or mtime changed).</summary>
internal sealed class RepoStore
{
    private readonly string _root;
    private readonly long _lfsThreshold;
    private readonly Dictionary<string, (string Fingerprint, RepoSnapshot Snap)> _repos = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, long, long), (string Sha256, string GitSha1)> _hashes = new();
    private readonly object _lock = new();

    public RepoStore(string root, long lfsThreshold)
    {
        _root = Path.GetFullPath(root);
        _lfsThreshold = lfsThreshold;
    }

    public string Root => _root;

    /// <summary>The repo's folder, or null when the id names no repo.</summary>
    public string? FindDir(string repoId)
    {
        var parts = repoId.Split('/');
        var dir = Path.Combine(_root, Path.Combine(parts));
        if (!Path.GetFullPath(dir).StartsWith(_root + Path.DirectorySeparatorChar, StringComparison.Ordinal)) return null;
        if (!Directory.Exists(dir)) return null;
        // An org-less id names a repo only when its folder holds files itself (an org folder holds only repo folders).
        if (parts.Length == 1 && !Directory.EnumerateFiles(dir).Any()) return null;
        return dir;
    }

    public RepoSnapshot? Get(string repoId)
    {
        var dir = FindDir(repoId);
        if (dir is null) return null;
        var listing = Walk(dir);
        var fp = string.Join('\n', listing.Select(f => $"{f.Rel}\0{f.Info.Length}\0{f.Info.LastWriteTimeUtc.Ticks}"));
        lock (_lock)
        {
            if (_repos.TryGetValue(repoId, out var cached) && cached.Fingerprint == fp) return cached.Snap;
            var files = new SortedDictionary<string, RepoFile>(StringComparer.Ordinal);
            foreach (var (rel, info) in listing)
            {
                var key = (info.FullName, info.Length, info.LastWriteTimeUtc.Ticks);
                if (!_hashes.TryGetValue(key, out var h))
                {
                    h = Hash(info.FullName, info.Length);
                    _hashes[key] = h;
                }
                files[rel] = new RepoFile(rel, info.FullName, info.Length, h.Sha256, h.GitSha1, info.Length > _lfsThreshold);
            }
            var sb = new StringBuilder();
            foreach (var f in files.Values) sb.Append(f.Path).Append('\0').Append(f.Size).Append('\0').Append(f.Sha256).Append('\n');
            var commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
            var lm = listing.Count == 0 ? Directory.GetLastWriteTimeUtc(dir) : listing.Max(l => l.Info.LastWriteTimeUtc);
            var snap = new RepoSnapshot(repoId, dir, commit, files, lm);
            _repos[repoId] = (fp, snap);
            return snap;
        }
    }

    private static List<(string Rel, FileInfo Info)> Walk(string dir)
    {
        var result = new List<(string, FileInfo)>();
        var stack = new Stack<(DirectoryInfo Dir, string Prefix, int Depth)>();
        stack.Push((new DirectoryInfo(dir), "", 0));
        while (stack.Count > 0)
        {
            var (d, prefix, depth) = stack.Pop();
            foreach (var e in d.EnumerateFileSystemInfos())
            {
                var rel = prefix + e.Name;
                if (e is DirectoryInfo sub)
                {
                    // model_cache: a Hub IR folder's weight cache (derived data as large as the weights, rewritten
                    // per CPU), not part of a repo
                    if (e.Name is ".git" or ".cache" || (depth == 0 && e.Name == "model_cache") || depth > 32) continue;
                    stack.Push((sub, rel + "/", depth + 1));
                }
                else if (e is FileInfo fi)
                {
                    // Follow symlinks to files; skip dangling ones.
                    var target = fi.LinkTarget is null ? fi : fi.ResolveLinkTarget(returnFinalTarget: true) as FileInfo;
                    if (target is null || !target.Exists) continue;
                    result.Add((rel, target));
                }
            }
        }
        result.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return result;
    }

    private static (string, string) Hash(string path, long size)
    {
        using var sha256 = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        sha1.AppendData(Encoding.ASCII.GetBytes($"blob {size}\0"));
        var buf = new byte[1 << 16];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        int n;
        while ((n = fs.Read(buf, 0, buf.Length)) > 0)
        {
            sha256.AppendData(buf, 0, n);
            sha1.AppendData(buf, 0, n);
        }
        return (Convert.ToHexStringLower(sha256.GetHashAndReset()), Convert.ToHexStringLower(sha1.GetHashAndReset()));
    }
}
