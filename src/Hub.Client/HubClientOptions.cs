namespace Hub.Client;

/// <summary>
/// Settings of a <see cref="HubClient"/>; names and defaults follow huggingface_hub's constants.py so that a
/// Python process and a C# process configured by the same environment share one cache and one endpoint.
/// </summary>
public sealed class HubClientOptions
{
    /// <summary>The public hub, used when <c>HF_ENDPOINT</c> is not set.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>Hub base URL (a mirror started by <c>hub serve</c> works too); a trailing slash is ignored.</summary>
    public string Endpoint { get; set; } = DefaultEndpoint;

    /// <summary>Root of the shared cache (<c>HF_HUB_CACHE</c>); holds <c>models--org--name</c> folders and <c>.locks</c>.</summary>
    public string CacheDir { get; set; } = DefaultCacheDir(null);

    /// <summary>Access token sent as <c>Authorization: Bearer</c>, to the hub's host only; never logged.</summary>
    public string? Token { get; set; }

    /// <summary>Never touch the network: serve from the cache or fail with <see cref="OfflineCacheMissException"/>.</summary>
    public bool Offline { get; set; }

    /// <summary>Timeout of one metadata request attempt (HEAD, model info); huggingface_hub's <c>HF_HUB_ETAG_TIMEOUT</c>.</summary>
    public TimeSpan EtagTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait for the next bytes of a download body (a stall, not the whole file); <c>HF_HUB_DOWNLOAD_TIMEOUT</c>.</summary>
    public TimeSpan DownloadTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Cap on one request including all of its retries.</summary>
    public TimeSpan OverallTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Retries after the first attempt, for 429/5xx/timeouts/resets and for an interrupted body (counter resets when bytes arrive).</summary>
    public int MaxRetries { get; set; } = 5;

    /// <summary>First backoff delay; doubles per retry with jitter (a <c>Retry-After</c> header wins).</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Upper bound of one backoff delay, including a server's <c>Retry-After</c>.</summary>
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a cached branch/tag → commit mapping (<c>refs/{revision}</c>) is trusted without asking the hub again,
    /// so that a model loaded a second time makes no request at all. <see cref="TimeSpan.Zero"/> asks every time
    /// (huggingface_hub's behaviour).
    /// </summary>
    public TimeSpan RevisionCacheTtl { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Files fetched at once by <see cref="HubClient.SnapshotDownloadAsync"/> (huggingface_hub uses 8).</summary>
    public int MaxParallelDownloads { get; set; } = 8;

    /// <summary>Hash downloaded bytes against the etag (sha256 for LFS files, git blob sha1 otherwise) and reject mismatches.</summary>
    public bool VerifyIntegrity { get; set; } = true;

    /// <summary>Hide progress output in the CLI (<c>HF_HUB_DISABLE_PROGRESS_BARS</c>).</summary>
    public bool DisableProgressBars { get; set; }

    /// <summary>Appended to the user agent (the hub's logs show who is downloading).</summary>
    public string UserAgent { get; set; } = "hub-dotnet/0.1";

    /// <summary>The endpoint without a trailing slash.</summary>
    internal string NormalizedEndpoint => Endpoint.TrimEnd('/');

    /// <summary>
    /// Reads the same environment variables as huggingface_hub: HF_ENDPOINT, HF_HOME, HF_HUB_CACHE (and legacy
    /// HUGGINGFACE_HUB_CACHE), HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH (default $HF_HOME/token),
    /// HF_HUB_DISABLE_IMPLICIT_TOKEN, HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT, HF_HUB_DISABLE_PROGRESS_BARS.
    /// </summary>
    public static HubClientOptions FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    /// <summary>Same as <see cref="FromEnvironment()"/> over any variable source (tests, config files).</summary>
    public static HubClientOptions FromEnvironment(Func<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        var o = new HubClientOptions();
        var ep = NonEmpty(env("HF_ENDPOINT"));
        if (ep is not null) o.Endpoint = ep.TrimEnd('/');
        var hfHome = HfHome(env);
        o.CacheDir = Expand(NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(hfHome, "hub"));
        // HF_HUB_DISABLE_IMPLICIT_TOKEN: a stored token is only sent when the caller passes one explicitly.
        o.Token = IsTrue(env("HF_HUB_DISABLE_IMPLICIT_TOKEN")) ? null : ResolveToken(env, hfHome);
        o.Offline = IsTrue(env("HF_HUB_OFFLINE")) || IsTrue(env("TRANSFORMERS_OFFLINE"));
        o.DisableProgressBars = IsTrue(env("HF_HUB_DISABLE_PROGRESS_BARS"));
        if (TrySeconds(env("HF_HUB_ETAG_TIMEOUT"), out var et)) o.EtagTimeout = et;
        if (TrySeconds(env("HF_HUB_DOWNLOAD_TIMEOUT"), out var dt)) o.DownloadTimeout = dt;
        return o;
    }

    /// <summary>The default cache folder: <c>$HF_HOME/hub</c>, HF_HOME defaulting to <c>$XDG_CACHE_HOME/huggingface</c> or <c>~/.cache/huggingface</c>.</summary>
    public static string DefaultCacheDir(Func<string, string?>? env)
    {
        env ??= Environment.GetEnvironmentVariable;
        return Path.Combine(HfHome(env), "hub");
    }

    private static string HfHome(Func<string, string?> env)
    {
        var home = NonEmpty(env("HF_HOME"));
        if (home is not null) return Expand(home);
        var xdg = NonEmpty(env("XDG_CACHE_HOME"));
        var baseDir = xdg is not null ? Expand(xdg) : Path.Combine(UserHome(), ".cache");
        return Path.Combine(baseDir, "huggingface");
    }

    private static string? ResolveToken(Func<string, string?> env, string hfHome)
    {
        var t = Clean(env("HF_TOKEN")) ?? Clean(env("HUGGING_FACE_HUB_TOKEN"));
        if (t is not null) return t;
        var path = NonEmpty(env("HF_TOKEN_PATH")) is { } p ? Expand(p) : Path.Combine(hfHome, "token");
        try { return File.Exists(path) ? Clean(File.ReadAllText(path)) : null; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static string? Clean(string? s)
    {
        if (s is null) return null;
        s = s.Replace("\r", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal).Trim();
        return s.Length == 0 ? null : s;
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    internal static bool IsTrue(string? s) =>
        s is not null && (s.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE");

    private static bool TrySeconds(string? s, out TimeSpan value)
    {
        value = default;
        if (s is null || !double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var sec) || sec <= 0)
            return false;
        value = TimeSpan.FromSeconds(sec);
        return true;
    }

    private static string UserHome() => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) is { Length: > 0 } h ? h : Path.GetTempPath();

    private static string Expand(string path)
    {
        path = Environment.ExpandEnvironmentVariables(path);
        if (path == "~") return UserHome();
        if (path.StartsWith("~/", StringComparison.Ordinal)) return Path.Combine(UserHome(), path[2..]);
        return path;
    }

    /// <summary>A copy, so a shared options object cannot be changed under a running client.</summary>
    public HubClientOptions Clone() => (HubClientOptions)MemberwiseClone();
}
