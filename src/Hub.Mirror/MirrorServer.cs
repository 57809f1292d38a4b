using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Hub.Mirror;

/// <summary>
/// A Hugging Face hub-compatible server over a folder of repos (<c>hub serve</c>): model info API and <c>resolve</c>
/// with HEAD/GET/Range, ETag/X-Linked-Etag/X-Linked-Size/X-Repo-Commit and X-Error-Code, as huggingface_hub expects.
/// Point <c>HF_ENDPOINT</c> at <see cref="BaseAddress"/> and both Python and Hub clients download from it.
/// </summary>
public sealed partial class MirrorServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly MirrorOptions _o;
    private readonly RepoStore _store;
    private readonly byte[] _cdnKey = RandomNumberGenerator.GetBytes(32);
    private readonly ConcurrentQueue<MirrorRequest> _log = new();
    private long _requests, _bytes, _failed, _cuts, _stalls, _delayed, _cdnRequests, _cdnWithAuth;

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:41234/</c>.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Requests received (all paths, including failed ones).</summary>
    public long RequestCount => Interlocked.Read(ref _requests);

    /// <summary>File body bytes sent.</summary>
    public long BytesServed => Interlocked.Read(ref _bytes);

    /// <summary>Requests to the redirect ("CDN") host.</summary>
    public long CdnRequestCount => Interlocked.Read(ref _cdnRequests);

    /// <summary>Requests to the redirect host that carried an Authorization header (a client leaking its token).</summary>
    public long CdnRequestsWithAuthorization => Interlocked.Read(ref _cdnWithAuth);

    /// <summary>Every request so far, in arrival order.</summary>
    public IReadOnlyCollection<MirrorRequest> Requests => _log.ToArray();

    /// <summary>Forgets counters and the request log (fault budgets are not reset).</summary>
    public void ResetCounters()
    {
        Interlocked.Exchange(ref _requests, 0);
        Interlocked.Exchange(ref _bytes, 0);
        Interlocked.Exchange(ref _cdnRequests, 0);
        Interlocked.Exchange(ref _cdnWithAuth, 0);
        _log.Clear();
    }

    private MirrorServer(WebApplication app, MirrorOptions o, RepoStore store)
    {
        _app = app;
        _o = o;
        _store = store;
    }

    /// <summary>Starts listening; the returned server runs until disposed.</summary>
    public static async Task<MirrorServer> StartAsync(MirrorOptions options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(options.Root) || !Directory.Exists(options.Root))
            throw new DirectoryNotFoundException($"Mirror root '{options.Root}' does not exist; pass a folder holding <org>/<name> repo folders.");
        // Empty builder: no appsettings/env configuration (ASPNETCORE_URLS cannot redirect the mirror) and no file
        // watchers (many short-lived mirrors in tests must not exhaust inotify instances).
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "Hub.Mirror", ContentRootPath = AppContext.BaseDirectory, Args = [] });
        builder.WebHost.UseKestrelCore();
        var ip = options.Host switch
        {
            "localhost" => IPAddress.Loopback,
            "*" or "+" => IPAddress.Any,
            var h when IPAddress.TryParse(h, out var a) => a,
            _ => throw new ArgumentException($"Mirror host '{options.Host}' is not an IP address (use 127.0.0.1, ::1 or 0.0.0.0).", nameof(options)),
        };
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(ip, options.Port);
            k.AddServerHeader = false;
            k.Limits.MaxConcurrentConnections = null;
        });
        var app = builder.Build();
        var server = new MirrorServer(app, options, new RepoStore(options.Root, options.LfsThreshold));
        app.Run(server.HandleAsync);
        await app.StartAsync(ct).ConfigureAwait(false);
        var addr = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var port = new Uri(addr).Port;
        var shownHost = ip.Equals(IPAddress.Any) ? "127.0.0.1" : ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ip}]" : ip.ToString();
        server.BaseAddress = new Uri($"http://{shownHost}:{port}/");
        return server;
    }

    /// <summary>Stops the server.</summary>
    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try { await _app.StopAsync(cts.Token).ConfigureAwait(false); }
        finally { await _app.DisposeAsync().ConfigureAwait(false); }
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
    private static partial Regex SegmentRegex();

    // ------------------------------------------------------------------ dispatch

    private async Task HandleAsync(HttpContext ctx)
    {
        Interlocked.Increment(ref _requests);
        var received = DateTime.UtcNow;
        var req = ctx.Request;
        var path = req.Path.Value ?? "/";
        var entry = new MirrorRequest(req.Method, path, req.Host.Host, req.Headers.Authorization.Count > 0, req.Headers.Range.Count > 0 ? req.Headers.Range.ToString() : null, received);
        _log.Enqueue(entry);
        ctx.Response.OnStarting(() =>
        {
            entry.Status = ctx.Response.StatusCode;
            return Task.CompletedTask;
        });
        try
        {
            var f = _o.Faults;
            var faultable = f.PathContains is null || path.Contains(f.PathContains, StringComparison.Ordinal);
            if (faultable && f.Delay > TimeSpan.Zero && (f.DelayFirstRequests <= 0 || Interlocked.Increment(ref _delayed) <= f.DelayFirstRequests))
                await Task.Delay(f.Delay, ctx.RequestAborted).ConfigureAwait(false);
            if (faultable && f.FailFirstRequests > 0 && Interlocked.Increment(ref _failed) <= f.FailFirstRequests)
            {
                if (f.RetryAfter is { } ra) ctx.Response.Headers.RetryAfter = ((int)Math.Ceiling(ra.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
                await Error(ctx, f.FailStatusCode, null, "Injected fault (mirror test option)").ConfigureAwait(false);
                return;
            }
            if (req.Method != HttpMethods.Get && req.Method != HttpMethods.Head)
            {
                await Error(ctx, 405, null, "Only GET and HEAD are served").ConfigureAwait(false);
                return;
            }
            var segs = path.Trim('/').Split('/');
            if (RenameRedirect(segs) is { } moved)
            {
                // Relative Location, like the hub after a repo rename: clients follow it and keep their token (same host).
                ctx.Response.StatusCode = 307;
                ctx.Response.Headers.Location = moved + ctx.Request.QueryString;
                return;
            }
            if (segs.Length >= 3 && segs[0] == "api" && segs[1] == "models") await ApiModelsAsync(ctx, segs[2..]).ConfigureAwait(false);
            else if (segs.Length >= 4 && segs[0] == "_cdn") await CdnAsync(ctx, segs).ConfigureAwait(false);
            else if (segs.Length >= 4 && segs[1] == "resolve") await ResolveAsync(ctx, segs[0], segs[2], segs[3..]).ConfigureAwait(false);
            else if (segs.Length >= 5 && segs[2] == "resolve") await ResolveAsync(ctx, segs[0] + "/" + segs[1], segs[3], segs[4..]).ConfigureAwait(false);
            else await Error(ctx, 404, null, "Not a hub route (expected /api/models/{repo} or /{repo}/resolve/{revision}/{path})").ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { }
        finally
        {
            if (entry.Status == 0) entry.Status = ctx.Response.StatusCode;
            _o.RequestLog?.Invoke($"{req.Method} {path} {ctx.Response.StatusCode}");
        }
    }

    /// <summary>The new path when the request names a renamed repo, else null.</summary>
    private string? RenameRedirect(string[] segs)
    {
        if (_o.RepoRenames.Count == 0) return null;
        foreach (var (from, to) in _o.RepoRenames)
        {
            var parts = from.Split('/');
            var apiPrefix = segs.Length >= 2 + parts.Length && segs[0] == "api" && segs[1] == "models" && segs.AsSpan(2, parts.Length).SequenceEqual(parts);
            if (apiPrefix && (segs.Length == 2 + parts.Length || segs[2 + parts.Length] == "revision"))
                return "/api/models/" + to + string.Concat(segs[(2 + parts.Length)..].Select(x => "/" + x));
            if (segs.Length > parts.Length && segs[parts.Length] == "resolve" && segs.AsSpan(0, parts.Length).SequenceEqual(parts))
                return "/" + to + string.Concat(segs[parts.Length..].Select(x => "/" + x));
        }
        return null;
    }

    private static Task Error(HttpContext ctx, int status, string? code, string message)
    {
        ctx.Response.StatusCode = status;
        if (code is not null) ctx.Response.Headers["X-Error-Code"] = code;
        ctx.Response.Headers["X-Error-Message"] = message;
        ctx.Response.ContentType = "application/json";
        if (HttpMethods.IsHead(ctx.Request.Method)) return Task.CompletedTask;
        return ctx.Response.WriteAsync(JsonSerializer.Serialize(new Dictionary<string, string> { ["error"] = message }));
    }

    private static bool ValidRepoId(string id) => id.Split('/') is { Length: 1 or 2 } parts && parts.All(p => SegmentRegex().IsMatch(p) && !p.Contains("..", StringComparison.Ordinal));

    /// <summary>The repo, after the gating check; null when an error was already written.</summary>
    private async Task<RepoSnapshot?> OpenRepoAsync(HttpContext ctx, string repoId)
    {
        RepoSnapshot? snap = ValidRepoId(repoId) ? _store.Get(repoId) : null;
        if (snap is null)
        {
            await Error(ctx, 404, "RepoNotFound", $"Repository not found: {repoId}").ConfigureAwait(false);
            return null;
        }
        if (_o.GatedRepos.Contains(repoId))
        {
            var auth = ctx.Request.Headers.Authorization.ToString();
            if (string.IsNullOrEmpty(auth))
            {
                await Error(ctx, 401, "GatedRepo", $"Access to model {repoId} is restricted. You must be authenticated to access it.").ConfigureAwait(false);
                return null;
            }
            var expected = "Bearer " + _o.RequiredToken;
            if (_o.RequiredToken is null || !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(auth), Encoding.UTF8.GetBytes(expected)))
            {
                await Error(ctx, 403, "GatedRepo", $"Access to model {repoId} is restricted and the token is not authorized.").ConfigureAwait(false);
                return null;
            }
        }
        return snap;
    }

    private static bool RevisionMatches(RepoSnapshot snap, string revision) => revision == "main" || revision == snap.Commit;

    // ------------------------------------------------------------------ /api/models

    private async Task ApiModelsAsync(HttpContext ctx, string[] rest)
    {
        string repoId;
        string? revision = null;
        switch (rest.Length)
        {
            case 1: repoId = rest[0]; break;
            case 2: repoId = rest[0] + "/" + rest[1]; break;
            case 3 when rest[1] == "revision": repoId = rest[0]; revision = Uri.UnescapeDataString(rest[2]); break;
            case 4 when rest[2] == "revision": repoId = rest[0] + "/" + rest[1]; revision = Uri.UnescapeDataString(rest[3]); break;
            default:
                await Error(ctx, 404, null, "Unsupported API route").ConfigureAwait(false);
                return;
        }
        var snap = await OpenRepoAsync(ctx, repoId).ConfigureAwait(false);
        if (snap is null) return;
        if (revision is not null && !RevisionMatches(snap, revision))
        {
            await Error(ctx, 404, "RevisionNotFound", $"Invalid rev id: {revision}").ConfigureAwait(false);
            return;
        }
        var gated = _o.GatedRepos.Contains(repoId);
        var body = new Dictionary<string, object?>
        {
            ["_id"] = snap.Commit[..24],
            ["id"] = repoId,
            ["modelId"] = repoId,
            ["sha"] = snap.Commit,
            ["private"] = false,
            ["gated"] = gated ? "manual" : false,
            ["disabled"] = false,
            ["lastModified"] = snap.LastModified.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture),
            ["tags"] = Array.Empty<string>(),
            ["downloads"] = 0,
            ["likes"] = 0,
            ["siblings"] = snap.Files.Values.Select(f => new Dictionary<string, object?>
            {
                ["rfilename"] = f.Path,
                ["size"] = f.Size,
                ["blobId"] = f.GitSha1,
                ["lfs"] = f.IsLfs ? new Dictionary<string, object?> { ["size"] = f.Size, ["sha256"] = f.Sha256, ["pointerSize"] = 134 } : null,
            }).ToArray(),
        };
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.Headers["X-Repo-Commit"] = snap.Commit;
        if (HttpMethods.IsHead(ctx.Request.Method)) return;
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(body, new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull })).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ /{repo}/resolve/{rev}/{path}

    /// <summary>Joins and decodes the path segments and rejects traversal (.., ., empty, backslash, absolute, NUL).</summary>
    private static string? RepoPath(string[] segs)
    {
        string joined;
        try { joined = Uri.UnescapeDataString(string.Join('/', segs)); }
        catch (UriFormatException) { return null; }
        if (joined.Length == 0 || joined.StartsWith('/') || joined.Contains('\\', StringComparison.Ordinal) || joined.Contains('\0', StringComparison.Ordinal) || joined.Contains(':', StringComparison.Ordinal))
            return null;
        return joined.Split('/').Any(s => s is "" or "." or "..") ? null : joined;
    }

    private async Task ResolveAsync(HttpContext ctx, string repoId, string revSeg, string[] fileSegs)
    {
        var path = RepoPath(fileSegs);
        if (path is null)
        {
            await Error(ctx, 400, null, "Invalid file path (absolute, '..' or '.' segments are not allowed)").ConfigureAwait(false);
            return;
        }
        var snap = await OpenRepoAsync(ctx, repoId).ConfigureAwait(false);
        if (snap is null) return;
        var revision = Uri.UnescapeDataString(revSeg);
        if (!RevisionMatches(snap, revision))
        {
            await Error(ctx, 404, "RevisionNotFound", $"Invalid rev id: {revision}").ConfigureAwait(false);
            return;
        }
        ctx.Response.Headers["X-Repo-Commit"] = snap.Commit;
        if (!snap.Files.TryGetValue(path, out var file))
        {
            await Error(ctx, 404, "EntryNotFound", $"Entry not found: {path}").ConfigureAwait(false);
            return;
        }
        ctx.Response.Headers.ETag = $"\"{file.Etag}\"";
        if (file.IsLfs)
        {
            ctx.Response.Headers["X-Linked-Etag"] = $"\"{file.Sha256}\"";
            ctx.Response.Headers["X-Linked-Size"] = file.Size.ToString(CultureInfo.InvariantCulture);
            if (_o.Faults.RedirectLfsToHost is { } host)
            {
                var folder = repoId.Replace("/", "--", StringComparison.Ordinal);
                var target = $"{folder}/{snap.Commit}/{path}";
                var sig = Convert.ToHexStringLower(HMACSHA256.HashData(_cdnKey, Encoding.UTF8.GetBytes(target)));
                var escaped = string.Join('/', target.Split('/').Select(Uri.EscapeDataString));
                ctx.Response.StatusCode = 302;
                ctx.Response.Headers.Location = $"http://{host}:{BaseAddress.Port}/_cdn/{escaped}?sig={sig}";
                return;
            }
        }
        await ServeFileAsync(ctx, file).ConfigureAwait(false);
    }

    private async Task CdnAsync(HttpContext ctx, string[] segs)
    {
        Interlocked.Increment(ref _cdnRequests);
        if (ctx.Request.Headers.Authorization.Count > 0) Interlocked.Increment(ref _cdnWithAuth);
        var folder = Uri.UnescapeDataString(segs[1]);
        var commit = segs[2];
        var path = RepoPath(segs[3..]);
        var sig = ctx.Request.Query["sig"].ToString();
        if (path is null || sig.Length == 0 ||
            !CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(sig), Encoding.ASCII.GetBytes(Convert.ToHexStringLower(HMACSHA256.HashData(_cdnKey, Encoding.UTF8.GetBytes($"{folder}/{commit}/{path}"))))))
        {
            await Error(ctx, 403, null, "Bad or missing signature").ConfigureAwait(false);
            return;
        }
        var repoId = folder.Replace("--", "/", StringComparison.Ordinal);
        var snap = ValidRepoId(repoId) ? _store.Get(repoId) : null;
        if (snap is null || snap.Commit != commit || !snap.Files.TryGetValue(path, out var file))
        {
            await Error(ctx, 404, null, "Object no longer exists").ConfigureAwait(false);
            return;
        }
        ctx.Response.Headers.ETag = $"\"{file.Sha256}\"";
        await ServeFileAsync(ctx, file).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ file bodies

    private async Task ServeFileAsync(HttpContext ctx, RepoFile file)
    {
        var resp = ctx.Response;
        resp.ContentType = "application/octet-stream";
        resp.Headers.AcceptRanges = "bytes";
        long start = 0, end = file.Size - 1;
        var range = ctx.Request.Headers.Range.ToString();
        if (range.Length > 0)
        {
            if (!TryParseRange(range, file.Size, out start, out end))
            {
                resp.StatusCode = 416;
                resp.Headers.ContentRange = $"bytes */{file.Size}";
                return;
            }
            resp.StatusCode = 206;
            resp.Headers.ContentRange = $"bytes {start}-{end}/{file.Size}";
        }
        var length = Math.Max(0, end - start + 1);
        resp.ContentLength = length;
        if (HttpMethods.IsHead(ctx.Request.Method)) return;

        var f = _o.Faults;
        long cutAt = long.MaxValue;
        if (f.CutBodyAfterBytes is { } k && length > k && Interlocked.Increment(ref _cuts) <= f.CutBodyTimes) cutAt = k;
        long stallAt = long.MaxValue;
        if (f.StallBodyAfterBytes is { } st && length > st && Interlocked.Increment(ref _stalls) <= f.StallBodyTimes) stallAt = st;
        var corruptAt = f.CorruptBody ? file.Size / 2 : -1;
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            await using var fs = new FileStream(file.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous);
            fs.Seek(start, SeekOrigin.Begin);
            long sent = 0;
            while (sent < length)
            {
                if (sent == stallAt)
                {
                    // Injected stall: headers and some bytes sent, then silence until the client gives up.
                    await resp.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
                    await Task.Delay(Timeout.Infinite, ctx.RequestAborted).ConfigureAwait(false);
                }
                var want = (int)Math.Min(buffer.Length, Math.Min(length - sent, Math.Min(cutAt, stallAt) - sent));
                if (want <= 0) break;
                var n = await fs.ReadAsync(buffer.AsMemory(0, want), ctx.RequestAborted).ConfigureAwait(false);
                if (n == 0) break;
                var pos = start + sent;
                if (corruptAt >= pos && corruptAt < pos + n) buffer[corruptAt - pos] ^= 0xFF;
                // Counted before the write completes: a client may see the bytes before this continuation runs.
                Interlocked.Add(ref _bytes, n);
                await resp.Body.WriteAsync(buffer.AsMemory(0, n), ctx.RequestAborted).ConfigureAwait(false);
                sent += n;
            }
            if (sent < length)
            {
                // Injected cut (or the file shrank): drop the connection mid-body so the client sees a premature end.
                await resp.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
                ctx.Abort();
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>One range: <c>bytes=a-</c>, <c>bytes=a-b</c> or <c>bytes=-n</c> (suffix).</summary>
    private static bool TryParseRange(string header, long size, out long start, out long end)
    {
        start = 0;
        end = size - 1;
        if (!header.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase)) return false;
        var spec = header[6..].Trim();
        if (spec.Contains(',', StringComparison.Ordinal)) return false;
        var dash = spec.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0) return false;
        var a = spec[..dash].Trim();
        var b = spec[(dash + 1)..].Trim();
        if (a.Length == 0)
        {
            if (!long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix) || suffix == 0) return false;
            start = Math.Max(0, size - suffix);
            return size > 0;
        }
        if (!long.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out start) || start >= size) return false;
        if (b.Length > 0)
        {
            if (!long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out end) || end < start) return false;
            end = Math.Min(end, size - 1);
        }
        return true;
    }
}
