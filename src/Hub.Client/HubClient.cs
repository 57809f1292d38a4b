using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hub.Client;

/// <summary>
/// Downloads files and snapshots from a Hugging Face-compatible hub into the shared huggingface_hub cache
/// (file_download.py / _snapshot_download.py semantics): HEAD then GET, branch → commit resolution once,
/// resume with Range, sha256/git-sha1 verification while streaming, a lock per blob, offline fallback.
/// </summary>
public sealed partial class HubClient : IDisposable
{
    private const int BufferSize = 64 * 1024;
    private readonly HubClientOptions _o;
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly ILogger _log;
    private readonly Uri _endpoint;

    /// <summary>The cache this client reads and fills.</summary>
    public HubCache Cache { get; }

    /// <summary>The options in effect (a private copy).</summary>
    public HubClientOptions Options => _o;

    /// <summary>
    /// Creates a client. Without <paramref name="options"/> the environment decides (<see cref="HubClientOptions.FromEnvironment()"/>);
    /// without <paramref name="httpClient"/> one with the resilience pipeline and no auto-redirect is built and owned.
    /// A supplied HttpClient should not follow redirects itself (<see cref="HubServiceCollectionExtensions.AddHubClient"/> sets that up).
    /// </summary>
    public HubClient(HubClientOptions? options = null, HttpClient? httpClient = null, ILogger<HubClient>? logger = null)
    {
        _o = (options ?? HubClientOptions.FromEnvironment()).Clone();
        _log = (ILogger?)logger ?? NullLogger.Instance;
        if (!Uri.TryCreate(_o.NormalizedEndpoint, UriKind.Absolute, out var ep) || (ep.Scheme != Uri.UriSchemeHttp && ep.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"Hub endpoint '{_o.Endpoint}' is not an absolute http(s) URL; fix HF_ENDPOINT or HubClientOptions.Endpoint.", nameof(options));
        _endpoint = ep;
        Cache = new HubCache(_o.CacheDir);
        if (httpClient is null)
        {
            _http = HubResilience.CreateHttpClient(_o, _log);
            _ownsHttp = true;
        }
        else _http = httpClient;
    }

    /// <summary>Disposes the HttpClient when this client created it.</summary>
    public void Dispose()
    {
        if (_ownsHttp) _http.Dispose();
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?$")]
    private static partial Regex RepoIdRegex();

    [GeneratedRegex(@"^[A-Za-z0-9_.\-]{1,128}$")]
    private static partial Regex EtagRegex();

    /// <summary>True for "org/name" or "name" (hub naming rules) that is not an existing local file or folder.</summary>
    public static bool LooksLikeRepoId(string s)
    {
        if (string.IsNullOrWhiteSpace(s)) return false;
        if (Directory.Exists(s) || File.Exists(s)) return false;
        return IsValidRepoId(s);
    }

    private static bool IsValidRepoId(string s) =>
        RepoIdRegex().IsMatch(s) && !s.Contains("..", StringComparison.Ordinal) && !s.Contains("--", StringComparison.Ordinal) && !s.EndsWith('.');

    private static void ValidateRepoId(string repoId)
    {
        ArgumentNullException.ThrowIfNull(repoId);
        if (!IsValidRepoId(repoId))
            throw new ArgumentException($"'{repoId}' is not a valid repo id: use 'org/name' or 'name' (letters, digits, '-', '_', '.'; no '--' or '..').", nameof(repoId));
    }

    /// <summary>Joins subfolder and filename with '/' and rejects absolute paths, backslashes and '..' segments.</summary>
    internal static string RepoPath(string filename, string? subfolder)
    {
        ArgumentNullException.ThrowIfNull(filename);
        var p = string.IsNullOrEmpty(subfolder) ? filename : subfolder.TrimEnd('/') + "/" + filename;
        if (p.Length == 0 || p.StartsWith('/') || p.Contains('\\', StringComparison.Ordinal) || p.Contains('\0', StringComparison.Ordinal)
            || p.Split('/').Any(seg => seg is "" or "." or ".."))
            throw new ArgumentException($"'{p}' is not a valid path inside a repo (relative, '/'-separated, no '.', '..' or empty segments).", nameof(filename));
        return p;
    }

    // ------------------------------------------------------------------ public API

    /// <summary>
    /// Model info (<c>sha</c>, <c>siblings</c>) of a repo at a revision. A commit, or a branch resolved less than
    /// <see cref="HubClientOptions.RevisionCacheTtl"/> ago, is answered from the copy saved in the cache (no request);
    /// offline, that copy or <see cref="OfflineCacheMissException"/>.
    /// </summary>
    public async Task<ModelInfo> ModelInfoAsync(string repoId, string? revision = null, CancellationToken ct = default)
    {
        ValidateRepoId(repoId);
        var rev = revision ?? "main";
        if (_o.Offline || HubCache.IsCommitHash(rev) || IsRefFresh(repoId, rev))
        {
            var commit = Cache.ResolveCommit(repoId, rev);
            if (commit is not null && Cache.ReadManifest(repoId, commit) is { } saved) return saved;
            if (_o.Offline)
                throw new OfflineCacheMissException(repoId, null, rev, "offline mode is on (HF_HUB_OFFLINE) and no model info was saved for it");
        }
        return await FetchModelInfoAsync(repoId, revision, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// The commit a branch, tag or commit resolves to (cache first within <see cref="HubClientOptions.RevisionCacheTtl"/>,
    /// or offline; else one model info request). Useful as a cache key for anything derived from a snapshot.
    /// </summary>
    public async Task<string> ResolveRevisionAsync(string repoId, string? revision = null, CancellationToken ct = default)
    {
        ValidateRepoId(repoId);
        var rev = revision ?? "main";
        if (HubCache.IsCommitHash(rev)) return rev;
        if ((_o.Offline || IsRefFresh(repoId, rev)) && Cache.ResolveCommit(repoId, rev) is { } cached) return cached;
        if (_o.Offline) throw new OfflineCacheMissException(repoId, null, rev, "offline mode is on (HF_HUB_OFFLINE) and the revision was never resolved in this cache");
        try
        {
            var info = await ModelInfoAsync(repoId, rev, ct).ConfigureAwait(false);
            return info.Sha ?? throw new HubHttpException($"model info of '{repoId}' at '{rev}' has no 'sha'; is HF_ENDPOINT ({_o.NormalizedEndpoint}) a Hugging Face-compatible hub?");
        }
        catch (HubHttpException e) when (IsUnreachable(e) && Cache.ResolveCommit(repoId, rev) is { } fallback)
        {
            _log.LogWarning("Hub unreachable ({Reason}); using cached commit of {Repo} at {Revision}", e.StatusCode?.ToString() ?? "network", repoId, rev);
            return fallback;
        }
    }

    /// <summary>
    /// Path (inside <c>snapshots/{commit}/</c>) of one repo file, downloaded once into <c>blobs/{etag}</c>.
    /// A cached commit, or a branch whose ref is fresher than <see cref="HubClientOptions.RevisionCacheTtl"/>, needs no request.
    /// </summary>
    public async Task<string> DownloadFileAsync(string repoId, string filename, string? revision = null, string? subfolder = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken ct = default)
    {
        ValidateRepoId(repoId);
        var path = RepoPath(filename, subfolder);
        revision ??= "main";

        if (HubCache.IsCommitHash(revision) || _o.Offline || IsRefFresh(repoId, revision))
        {
            switch (Cache.Lookup(repoId, path, revision, out var cached))
            {
                case HubCache.LookupResult.Found: return cached!;
                case HubCache.LookupResult.KnownMissing: throw NotFoundFromCache(repoId, path, revision);
            }
            if (!_o.Offline && Cache.ResolveCommit(repoId, revision) is { } c && Cache.ReadManifest(repoId, c) is { } m
                && !m.Siblings.Any(s => s.RFilename == path))
                throw NotFoundFromCache(repoId, path, revision);
        }
        if (_o.Offline)
            throw new OfflineCacheMissException(repoId, path, revision, "offline mode is on (HF_HUB_OFFLINE)");

        FileMetadata meta;
        try
        {
            meta = await GetFileMetadataAsync(repoId, path, revision, ct).ConfigureAwait(false);
        }
        catch (HubHttpException e) when (IsUnreachable(e) || e is RepositoryNotFoundException or GatedRepoException)
        {
            if (Cache.Lookup(repoId, path, revision, out var cached) == HubCache.LookupResult.Found)
            {
                _log.LogWarning("Hub unreachable or refused ({Reason}); using cached {Repo}/{File} at {Revision}", e.StatusCode?.ToString() ?? "network", repoId, path, revision);
                return cached!;
            }
            if (IsUnreachable(e))
                throw new HubHttpException(e.Message + $" No cached copy of '{path}' from '{repoId}' at revision '{revision}' exists either.", e.StatusCode, e.Url, e);
            throw;
        }
        Cache.WriteRef(repoId, revision, meta.Commit);
        return await DownloadToCacheAsync(repoId, path, meta, progress, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Downloads every file of a revision that passes the fnmatch <paramref name="allowPatterns"/>/<paramref name="ignorePatterns"/>
    /// and returns <c>snapshots/{commit}</c>. The branch is resolved once (model info <c>sha</c>) and files are fetched by commit,
    /// so a complete cached snapshot loads with zero requests; network failures and 5xx fall back to the cached snapshot.
    /// </summary>
    public async Task<string> SnapshotDownloadAsync(string repoId, string? revision = null, IEnumerable<string>? allowPatterns = null,
        IEnumerable<string>? ignorePatterns = null, IProgress<DownloadProgress>? progress = null, CancellationToken ct = default)
    {
        ValidateRepoId(repoId);
        revision ??= "main";
        var allow = allowPatterns?.ToArray();
        var ignore = ignorePatterns?.ToArray();

        if (_o.Offline) return OfflineSnapshot(repoId, revision, allow, ignore, "offline mode is on (HF_HUB_OFFLINE)");

        string commit;
        IReadOnlyList<RepoSibling>? siblings = null;
        var pinned = HubCache.IsCommitHash(revision) || IsRefFresh(repoId, revision) ? Cache.ResolveCommit(repoId, revision) : null;
        if (pinned is not null && Cache.ReadManifest(repoId, pinned) is { } manifest)
        {
            var wanted = GlobFilter.Filter(manifest.Siblings.Select(s => s.RFilename), allow, ignore).ToList();
            if (wanted.All(f => SafePointer(repoId, pinned, f) is { } p && File.Exists(p)))
                return Cache.SnapshotDir(repoId, pinned);
            if (HubCache.IsCommitHash(revision)) siblings = manifest.Siblings;
        }

        if (siblings is null)
        {
            ModelInfo info;
            try
            {
                info = await FetchModelInfoAsync(repoId, revision, ct).ConfigureAwait(false);
            }
            catch (HubHttpException e) when (IsUnreachable(e))
            {
                var c = Cache.ResolveCommit(repoId, revision);
                if (c is not null && Directory.Exists(Cache.SnapshotDir(repoId, c)))
                {
                    _log.LogWarning("Hub unreachable ({Reason}); using cached snapshot of {Repo} at {Revision}", e.StatusCode?.ToString() ?? "network", repoId, revision);
                    return OfflineSnapshot(repoId, revision, allow, ignore, "the hub could not be reached: " + e.Message);
                }
                throw new HubHttpException(e.Message + $" No cached snapshot of '{repoId}' at revision '{revision}' exists either.", e.StatusCode, e.Url, e);
            }
            commit = info.Sha ?? throw new HubHttpException($"model info of '{repoId}' at '{revision}' has no 'sha'; is HF_ENDPOINT ({_o.NormalizedEndpoint}) a Hugging Face-compatible hub?");
            if (!HubCache.IsCommitHash(commit))
                throw new HubHttpException($"model info of '{repoId}' at '{revision}' gives sha '{commit}', which is not a 40-hex commit.");
            siblings = info.Siblings;
        }
        else commit = revision;

        var files = GlobFilter.Filter(siblings.Select(s => s.RFilename), allow, ignore).ToList();
        foreach (var f in files)
        {
            try { Cache.PointerPath(repoId, commit, RepoPath(f, null)); }
            catch (ArgumentException)
            {
                throw new HubHttpException($"The hub lists '{f}' in '{repoId}' at {commit}, which is not a safe relative path; nothing was downloaded. The hub or mirror at {_o.NormalizedEndpoint} is misbehaving.");
            }
        }
        var snap = Cache.SnapshotDir(repoId, commit);
        Directory.CreateDirectory(snap);
        await Parallel.ForEachAsync(files, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, _o.MaxParallelDownloads), CancellationToken = ct },
            async (f, token) =>
            {
                if (File.Exists(Cache.PointerPath(repoId, commit, f))) return;
                await DownloadFileAsync(repoId, f, commit, null, progress, token).ConfigureAwait(false);
            }).ConfigureAwait(false);
        return snap;
    }

    /// <summary>huggingface_hub's try_to_load_from_cache: the cached path of a file at a revision, or null (no network).</summary>
    public string? TryLoadFromCache(string repoId, string filename, string? revision = null)
    {
        ValidateRepoId(repoId);
        return Cache.Lookup(repoId, RepoPath(filename, null), revision ?? "main", out var p) == HubCache.LookupResult.Found ? p : null;
    }

    // ------------------------------------------------------------------ snapshot helpers

    /// <summary>Model info from the hub (never from the cache), recorded as ref + manifest.</summary>
    private async Task<ModelInfo> FetchModelInfoAsync(string repoId, string? revision, CancellationToken ct)
    {
        var rev = revision ?? "main";
        var url = revision is null
            ? new Uri($"{_o.NormalizedEndpoint}/api/models/{repoId}")
            : new Uri($"{_o.NormalizedEndpoint}/api/models/{repoId}/revision/{Uri.EscapeDataString(revision)}");
        using var resp = await SendAsync(HttpMethod.Get, url, followAbsolute: true, rangeFrom: null, ct).ConfigureAwait(false);
        if (!resp.IsSuccessStatusCode) throw await MapErrorAsync(resp, HttpMethod.Get, url, repoId, rev, null).ConfigureAwait(false);
        var info = ModelInfo.Parse(await resp.Content.ReadAsStringAsync(ct).ConfigureAwait(false), repoId);
        if (info.Sha is { } sha && HubCache.IsCommitHash(sha))
        {
            Cache.WriteRef(repoId, rev, sha);
            Cache.WriteManifest(repoId, sha, info);
        }
        return info;
    }

    private string? SafePointer(string repoId, string commit, string file)
    {
        try { return Cache.PointerPath(repoId, commit, RepoPath(file, null)); }
        catch (ArgumentException) { return null; }
    }

    private bool IsRefFresh(string repoId, string revision) =>
        _o.RevisionCacheTtl > TimeSpan.Zero && Cache.RefAge(repoId, revision) is { } age && age < _o.RevisionCacheTtl;

    private string OfflineSnapshot(string repoId, string revision, string[]? allow, string[]? ignore, string reason)
    {
        var commit = Cache.ResolveCommit(repoId, revision)
            ?? throw new OfflineCacheMissException(repoId, null, revision, reason + ", and the revision was never resolved in this cache");
        var snap = Cache.SnapshotDir(repoId, commit);
        if (!Directory.Exists(snap))
            throw new OfflineCacheMissException(repoId, null, revision, reason + $", and snapshots/{commit} does not exist");
        if (Cache.ReadManifest(repoId, commit) is { } m)
        {
            foreach (var f in GlobFilter.Filter(m.Siblings.Select(s => s.RFilename), allow, ignore))
                if (SafePointer(repoId, commit, f) is not { } p || !File.Exists(p))
                    throw new OfflineCacheMissException(repoId, f, revision, reason);
        }
        return snap;
    }

    private EntryNotFoundException NotFoundFromCache(string repoId, string path, string revision) =>
        new(repoId, path, $"'{path}' does not exist in '{repoId}' at revision '{revision}' (known from the cache: .no_exist marker or saved file list).");

    private static bool IsUnreachable(HubHttpException e) =>
        e.GetType() == typeof(HubHttpException) && (e.StatusCode is null || (int)e.StatusCode >= 500 || e.StatusCode == HttpStatusCode.TooManyRequests);

    // ------------------------------------------------------------------ metadata (HEAD)

    private sealed record FileMetadata(string Commit, string Etag, long Size, Uri Location);

    private async Task<FileMetadata> GetFileMetadataAsync(string repoId, string path, string revision, CancellationToken ct)
    {
        var url = ResolveUrl(repoId, path, revision);
        using var resp = await SendAsync(HttpMethod.Head, url, followAbsolute: false, rangeFrom: null, ct).ConfigureAwait(false);
        var commit = Header(resp, "X-Repo-Commit");
        var isRedirect = (int)resp.StatusCode is >= 300 and < 400;
        if (!resp.IsSuccessStatusCode && !isRedirect)
        {
            var err = await MapErrorAsync(resp, HttpMethod.Head, url, repoId, revision, path).ConfigureAwait(false);
            if (err is EntryNotFoundException && commit is not null && HubCache.IsCommitHash(commit))
            {
                Cache.WriteNoExist(repoId, commit, path);
                Cache.WriteRef(repoId, revision, commit);
            }
            throw err;
        }
        if (commit is null || !HubCache.IsCommitHash(commit))
            throw new HubHttpException($"HEAD {url} answered without a valid X-Repo-Commit header: the resource is not on a Hugging Face-compatible hub, or a proxy/SSL problem is in the way (check HF_ENDPOINT).", resp.StatusCode, url.ToString());
        var etag = NormalizeEtag(Header(resp, "X-Linked-Etag") ?? Header(resp, "ETag"));
        if (etag is null || !EtagRegex().IsMatch(etag))
            throw new HubHttpException($"HEAD {url} answered without a usable ETag/X-Linked-Etag; cannot name the blob (check HF_ENDPOINT).", resp.StatusCode, url.ToString());
        long? size = long.TryParse(Header(resp, "X-Linked-Size"), NumberStyles.None, CultureInfo.InvariantCulture, out var ls) ? ls : resp.Content.Headers.ContentLength;
        if (size is null || size < 0)
            throw new HubHttpException($"HEAD {url} answered without X-Linked-Size/Content-Length; cannot check the download.", resp.StatusCode, url.ToString());
        var location = resp.Headers.Location is { } loc ? (loc.IsAbsoluteUri ? loc : new Uri(url, loc)) : url;
        return new FileMetadata(commit, etag, size.Value, location);
    }

    private Uri ResolveUrl(string repoId, string path, string revision) =>
        new($"{_o.NormalizedEndpoint}/{repoId}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', path.Split('/').Select(Uri.EscapeDataString))}");

    private static string? NormalizeEtag(string? etag)
    {
        if (etag is null) return null;
        etag = etag.Trim();
        if (etag.StartsWith("W/", StringComparison.Ordinal)) etag = etag[2..];
        return etag.Trim('"');
    }

    private static string? Header(HttpResponseMessage r, string name)
    {
        if (r.Headers.TryGetValues(name, out var v)) return v.FirstOrDefault();
        if (r.Content.Headers.TryGetValues(name, out var cv)) return cv.FirstOrDefault();
        return null;
    }

    // ------------------------------------------------------------------ HTTP

    private bool SameHostAsHub(Uri u) =>
        string.Equals(u.Scheme, _endpoint.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(u.IdnHost, _endpoint.IdnHost, StringComparison.OrdinalIgnoreCase) && u.Port == _endpoint.Port;

    /// <summary>Sends with manual redirects: relative ones always followed, absolute ones only when asked; the token goes to the hub's host only.</summary>
    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri url, bool followAbsolute, long? rangeFrom, CancellationToken ct)
    {
        for (var hop = 0; ; hop++)
        {
            using var req = new HttpRequestMessage(method, url);
            req.Headers.UserAgent.ParseAdd(_o.UserAgent);
            req.Headers.TryAddWithoutValidation("X-Amzn-Trace-Id", Guid.NewGuid().ToString());
            if (method == HttpMethod.Head) req.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("identity"));
            if (_o.Token is { Length: > 0 } tok && SameHostAsHub(url)) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", tok);
            if (rangeFrom is { } from) req.Headers.Range = new RangeHeaderValue(from, null);
            HttpResponseMessage resp;
            try
            {
                resp = await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException or Polly.Timeout.TimeoutRejectedException or IOException)
            {
                throw new HubHttpException($"{method} {url} failed: {Describe(e)} (after up to {_o.MaxRetries} retries). Check the network and HF_ENDPOINT ({_o.NormalizedEndpoint}).", null, url.ToString(), e);
            }
            var code = (int)resp.StatusCode;
            if (code is >= 300 and < 400 && resp.Headers.Location is { } loc && hop < 10)
            {
                if (!loc.IsAbsoluteUri || followAbsolute)
                {
                    var next = loc.IsAbsoluteUri ? loc : new Uri(url, loc);
                    _log.LogDebug("Redirect {From} -> {To}", url, next.GetLeftPart(UriPartial.Path));
                    resp.Dispose();
                    url = next;
                    continue;
                }
            }
            return resp;
        }
    }

    private static string Describe(Exception e) => e switch
    {
        Polly.Timeout.TimeoutRejectedException => "timed out",
        OperationCanceledException => "timed out",
        _ => e.Message,
    };

    private async Task<HubHttpException> MapErrorAsync(HttpResponseMessage resp, HttpMethod method, Uri url, string repoId, string revision, string? filename)
    {
        var code = Header(resp, "X-Error-Code");
        var server = Header(resp, "X-Error-Message");
        if (server is null && method != HttpMethod.Head)
        {
            try
            {
                var body = await resp.Content.ReadAsStringAsync().ConfigureAwait(false);
                if (body.Length > 2000) body = body[..2000];
                server = ExtractServerMessage(body);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException) { }
        }
        server = Scrub(server);
        var status = resp.StatusCode;
        var detail = server is null ? "" : $" Server says: {server}";
        var u = url.ToString();
        var tokenNote = _o.Token is null ? "No token was sent." : "The token that was sent is not allowed to access it.";
        var tokenFix = "Set HF_TOKEN (or HubClientOptions.Token / --token) to a token of an account with access to it.";
        switch (code)
        {
            case "RevisionNotFound":
                return new RevisionNotFoundException(repoId, revision, $"Revision '{revision}' does not exist in '{repoId}' ({(int)status}). Use an existing branch, tag or full commit sha.{detail}", status, u);
            case "EntryNotFound":
                return new EntryNotFoundException(repoId, filename ?? "", $"'{filename}' does not exist in '{repoId}' at revision '{revision}' ({(int)status}).{detail}", status, u);
            case "GatedRepo":
                return new GatedRepoException(repoId, $"'{repoId}' is gated: access requires accepting its terms and authenticating ({(int)status}). {tokenNote} {tokenFix}{detail}", status, u);
            case "RepoNotFound":
                return new RepositoryNotFoundException(repoId, $"Repository '{repoId}' was not found on {_o.NormalizedEndpoint} ({(int)status}). Check the id; if it is private or gated, {tokenFix}{detail}", status, u);
        }
        if (server == "Access to this resource is disabled.")
            return new HubHttpException($"Access to '{repoId}' has been disabled by the hub.", status, u);
        switch (status)
        {
            case HttpStatusCode.Unauthorized:
                return new GatedRepoException(repoId, $"'{repoId}' needs authentication (401): it is private, gated or does not exist. {tokenNote} {tokenFix}{detail}", status, u);
            case HttpStatusCode.Forbidden:
                return new GatedRepoException(repoId, $"Access to '{repoId}' is forbidden (403). {tokenNote} {tokenFix}{detail}", status, u);
            case HttpStatusCode.NotFound when filename is null:
                return new RepositoryNotFoundException(repoId, $"Repository '{repoId}' was not found on {_o.NormalizedEndpoint} (404). Check the id; if it is private, {tokenFix}{detail}", status, u);
            case HttpStatusCode.NotFound:
                return new EntryNotFoundException(repoId, filename, $"'{filename}' was not found in '{repoId}' at revision '{revision}' (404).{detail}", status, u);
            case HttpStatusCode.RequestedRangeNotSatisfiable:
                return new HubHttpException($"{method} {u}: range not satisfiable (416); delete the .incomplete file and retry.{detail}", status, u);
        }
        var retried = (int)status >= 500 || status is HttpStatusCode.TooManyRequests or HttpStatusCode.RequestTimeout
            ? $" Gave up after {_o.MaxRetries} retries with exponential backoff; the hub or mirror is failing or rate-limiting, try again later." : "";
        return new HubHttpException($"{method} {u} failed with {(int)status} {resp.ReasonPhrase}.{retried}{detail}", status, u);
    }

    private static string? ExtractServerMessage(string body)
    {
        if (string.IsNullOrWhiteSpace(body)) return null;
        var t = body.TrimStart();
        if (t.StartsWith('{'))
        {
            try
            {
                using var doc = JsonDocument.Parse(t);
                if (doc.RootElement.TryGetProperty("error", out var e))
                    return e.ValueKind == JsonValueKind.String ? e.GetString() : e.ToString();
            }
            catch (JsonException) { }
        }
        return t.StartsWith('<') ? null : t.Trim();
    }

    /// <summary>Removes the token from text that came from elsewhere (a server may echo headers).</summary>
    private string? Scrub(string? s) =>
        s is null || _o.Token is not { Length: > 0 } tok ? s : s.Replace(tok, "***", StringComparison.Ordinal);

    // ------------------------------------------------------------------ download

    private async Task<string> DownloadToCacheAsync(string repoId, string path, FileMetadata meta, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var pointer = Cache.PointerPath(repoId, meta.Commit, path);
        if (File.Exists(pointer)) return pointer;
        var blob = Cache.BlobPath(repoId, meta.Etag);
        using (await BlobLock.AcquireAsync(Cache.LockPath(repoId, meta.Etag), _log, ct).ConfigureAwait(false))
        {
            var isNew = false;
            if (!File.Exists(blob))
            {
                await DownloadBlobAsync(repoId, path, meta, blob, progress, ct).ConfigureAwait(false);
                isNew = true;
            }
            else progress?.Report(new DownloadProgress(repoId, path, meta.Size, meta.Size, true));
            if (!File.Exists(pointer)) Cache.LinkPointer(blob, pointer, isNew);
        }
        return pointer;
    }

    private IncrementalHash? NewHasher(FileMetadata meta)
    {
        if (!_o.VerifyIntegrity) return null;
        if (HubCache.IsSha256(meta.Etag)) return IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        if (HubCache.IsCommitHash(meta.Etag))
        {
            // git blob id: sha1("blob {size}\0" + content)
            var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
            h.AppendData(Encoding.ASCII.GetBytes($"blob {meta.Size.ToString(CultureInfo.InvariantCulture)}\0"));
            return h;
        }
        return null;
    }

    private async Task DownloadBlobAsync(string repoId, string path, FileMetadata meta, string blob, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        var incomplete = blob + ".incomplete";
        var expected = meta.Size;
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        var hasher = NewHasher(meta);
        var fs = new FileStream(incomplete, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.Asynchronous);
        var corrupt = false;
        try
        {
            long offset = fs.Length;
            if (offset > expected) { fs.SetLength(0); offset = 0; }
            if (offset > 0)
            {
                _log.LogInformation("Resuming {Repo}/{File} at byte {Offset} of {Size}", repoId, path, offset, expected);
                if (hasher is not null) await HashPrefixAsync(fs, offset, hasher, buffer, ct).ConfigureAwait(false);
            }
            fs.Seek(offset, SeekOrigin.Begin);
            progress?.Report(new DownloadProgress(repoId, path, offset, expected, false));
            var retriesLeft = _o.MaxRetries;
            long lastReport = offset;
            while (offset < expected)
            {
                long before = offset;
                try
                {
                    using var resp = await SendAsync(HttpMethod.Get, meta.Location, followAbsolute: true, rangeFrom: offset > 0 ? offset : null, ct).ConfigureAwait(false);
                    if (!resp.IsSuccessStatusCode)
                        throw await MapErrorAsync(resp, HttpMethod.Get, meta.Location, repoId, meta.Commit, path).ConfigureAwait(false);
                    if (offset > 0 && (resp.StatusCode != HttpStatusCode.PartialContent || resp.Content.Headers.ContentRange?.From != offset))
                    {
                        // The server ignored or misread Range: start over rather than append the wrong bytes.
                        _log.LogWarning("Server did not honour Range for {Repo}/{File}; restarting from 0", repoId, path);
                        fs.SetLength(0);
                        fs.Seek(0, SeekOrigin.Begin);
                        offset = 0;
                        hasher?.Dispose();
                        hasher = NewHasher(meta);
                    }
                    await using var body = await resp.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                    using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    while (true)
                    {
                        stall.CancelAfter(_o.DownloadTimeout);
                        int n = await body.ReadAsync(buffer.AsMemory(0, BufferSize), stall.Token).ConfigureAwait(false);
                        if (n == 0) break;
                        if (offset + n > expected)
                            throw new IntegrityException(repoId, path, $"the server sent more than the announced {expected} bytes; nothing was kept. Retry; if it persists the hub's metadata is wrong.");
                        await fs.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                        hasher?.AppendData(buffer, 0, n);
                        offset += n;
                        retriesLeft = _o.MaxRetries;
                        if (progress is not null && offset - lastReport >= 1 << 20)
                        {
                            lastReport = offset;
                            progress.Report(new DownloadProgress(repoId, path, offset, expected, false));
                        }
                    }
                    if (offset < expected)
                        throw new IOException($"body ended at byte {offset} of {expected}");
                }
                catch (Exception e) when (!ct.IsCancellationRequested && IsInterruption(e))
                {
                    if (retriesLeft-- <= 0)
                    {
                        // The partial file stays: a later call resumes from it.
                        throw new HubHttpException($"Download of '{path}' from '{repoId}' was interrupted at byte {offset} of {expected} and did not recover after {_o.MaxRetries} retries ({Describe(e)}). Run again to resume from the partial file.", (e as HubHttpException)?.StatusCode, meta.Location.GetLeftPart(UriPartial.Path), e);
                    }
                    _log.LogWarning("Download of {Repo}/{File} interrupted at byte {Offset} ({Reason}); resuming", repoId, path, offset, Describe(e));
                    if (offset == before) await Task.Delay(_o.RetryBaseDelay, ct).ConfigureAwait(false);
                }
            }
            await fs.FlushAsync(ct).ConfigureAwait(false);
            if (fs.Length != expected)
                throw new IntegrityException(repoId, path, $"downloaded {fs.Length} bytes but the hub announced {expected}; nothing was kept. Retry the download.");
            if (hasher is not null)
            {
                var got = Convert.ToHexStringLower(hasher.GetHashAndReset());
                if (!string.Equals(got, meta.Etag, StringComparison.OrdinalIgnoreCase))
                    throw new IntegrityException(repoId, path,
                        $"{(got.Length == 64 ? "sha256" : "git blob sha1")} of the downloaded bytes is {got} but the hub says {meta.Etag}; the corrupt download was deleted and nothing was cached. Retry; if it persists the mirror or a proxy is corrupting data.");
            }
            await fs.DisposeAsync().ConfigureAwait(false);
            File.Move(incomplete, blob, overwrite: true);
            progress?.Report(new DownloadProgress(repoId, path, expected, expected, true));
        }
        catch (IntegrityException)
        {
            corrupt = true; // wrong bytes must not be resumed from
            throw;
        }
        finally
        {
            await fs.DisposeAsync().ConfigureAwait(false);
            hasher?.Dispose();
            ArrayPool<byte>.Shared.Return(buffer);
            if (corrupt) HubCache.TryDelete(incomplete);
        }
    }

    private static bool IsInterruption(Exception e) => e switch
    {
        IntegrityException => false,
        HubHttpException h => IsUnreachable(h) && h.StatusCode is null,
        IOException or HttpRequestException or OperationCanceledException => true,
        _ => false,
    };

    private static async Task HashPrefixAsync(FileStream fs, long length, IncrementalHash hasher, byte[] buffer, CancellationToken ct)
    {
        fs.Seek(0, SeekOrigin.Begin);
        long left = length;
        while (left > 0)
        {
            int n = await fs.ReadAsync(buffer.AsMemory(0, (int)Math.Min(BufferSize, left)), ct).ConfigureAwait(false);
            if (n == 0) break;
            hasher.AppendData(buffer, 0, n);
            left -= n;
        }
    }
}
