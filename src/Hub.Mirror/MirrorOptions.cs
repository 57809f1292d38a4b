namespace Hub.Mirror;

/// <summary>Settings of a <see cref="MirrorServer"/>: what to serve, where to listen, who may read gated repos, and test faults.</summary>
public sealed class MirrorOptions
{
    /// <summary>Folder whose <c>org/name</c> sub-folders are served as repos (<c>name</c> folders holding files directly are org-less repos).</summary>
    public string Root { get; set; } = "";

    /// <summary>Address to bind; loopback by default so a mirror is never exposed by accident.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port; 0 picks a free one (read it back from <see cref="MirrorServer.BaseAddress"/>).</summary>
    public int Port { get; set; }

    /// <summary>Repo ids that require <c>Authorization: Bearer {RequiredToken}</c> (401/403 with <c>X-Error-Code: GatedRepo</c> otherwise).</summary>
    public ISet<string> GatedRepos { get; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>The token gated repos accept.</summary>
    public string? RequiredToken { get; set; }

    /// <summary>Renamed repos: requests for the old id get a relative 307 to the new one, as the hub answers after a rename.</summary>
    public IDictionary<string, string> RepoRenames { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Files larger than this are served as LFS files: etag = sha256 in <c>X-Linked-Etag</c>, like the hub.</summary>
    public long LfsThreshold { get; set; } = 1024 * 1024;

    /// <summary>Called with one line per request (method, path, status); never includes headers.</summary>
    public Action<string>? RequestLog { get; set; }

    /// <summary>Fault injection for resilience tests; all off by default.</summary>
    public MirrorFaults Faults { get; set; } = new();
}

/// <summary>Test-only faults, applied by the real server on real sockets so that client resilience is tested end to end.</summary>
public sealed class MirrorFaults
{
    /// <summary>Answer the first N matching requests with <see cref="FailStatusCode"/>.</summary>
    public int FailFirstRequests { get; set; }

    /// <summary>Status of injected failures: 500, 503 or 429.</summary>
    public int FailStatusCode { get; set; } = 503;

    /// <summary>Retry-After sent with injected failures (whole seconds), or none.</summary>
    public TimeSpan? RetryAfter { get; set; }

    /// <summary>Only requests whose path contains this are failed/delayed (null: all).</summary>
    public string? PathContains { get; set; }

    /// <summary>Abort the connection after sending this many body bytes of a file.</summary>
    public long? CutBodyAfterBytes { get; set; }

    /// <summary>How many file responses get cut (then bodies are served whole).</summary>
    public int CutBodyTimes { get; set; } = 1;

    /// <summary>Flip one byte (in the middle of the file) in every file body served.</summary>
    public bool CorruptBody { get; set; }

    /// <summary>Wait this long before answering matching requests.</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>Apply <see cref="Delay"/> to the first N matching requests only (0: to all).</summary>
    public int DelayFirstRequests { get; set; }

    /// <summary>Stop sending (without closing) after this many body bytes, until the client gives up; a stalled transfer.</summary>
    public long? StallBodyAfterBytes { get; set; }

    /// <summary>How many file responses stall.</summary>
    public int StallBodyTimes { get; set; } = 1;

    /// <summary>
    /// Serve LFS files through a 302 to this host name (e.g. "localhost" when listening on 127.0.0.1), like the hub's CDN
    /// redirects, so that a client's dropping of the Authorization header off-host can be observed.
    /// </summary>
    public string? RedirectLfsToHost { get; set; }
}

/// <summary>
/// One request as the mirror saw it (for tests and logs; no header values). Recorded on arrival, with the status filled in
/// just before the response headers go out, so a client never sees a response the log does not yet show.
/// </summary>
public sealed class MirrorRequest
{
    private int _status;

    /// <summary>Creates the entry.</summary>
    public MirrorRequest(string method, string path, string host, bool hasAuthorization, string? range, DateTime receivedUtc)
    {
        Method = method;
        Path = path;
        Host = host;
        HasAuthorization = hasAuthorization;
        Range = range;
        ReceivedUtc = receivedUtc;
    }

    /// <summary>HTTP method.</summary>
    public string Method { get; }
    /// <summary>Request path (decoded by Kestrel).</summary>
    public string Path { get; }
    /// <summary>Host header's host name (tells hub from redirect host).</summary>
    public string Host { get; }
    /// <summary>Whether an Authorization header was present (its value is never kept).</summary>
    public bool HasAuthorization { get; }
    /// <summary>The Range header, if any.</summary>
    public string? Range { get; }
    /// <summary>Arrival time.</summary>
    public DateTime ReceivedUtc { get; }
    /// <summary>Response status (0 until the response starts).</summary>
    public int Status { get => Volatile.Read(ref _status); internal set => Volatile.Write(ref _status, value); }

    /// <inheritdoc/>
    public override string ToString() => $"{Method} {Path} host={Host} auth={HasAuthorization} range={Range} -> {Status}";
}
