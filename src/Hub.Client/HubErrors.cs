using System.Net;

namespace Hub.Client;

/// <summary>The hub answered with an HTTP error that no more specific type describes (or retries were exhausted).</summary>
public class HubHttpException : HubException
{
    /// <summary>The HTTP status, when a response was received.</summary>
    public HttpStatusCode? StatusCode { get; }
    /// <summary>The URL asked (never contains a token).</summary>
    public string? Url { get; }

    /// <summary>Creates the exception.</summary>
    public HubHttpException(string message, HttpStatusCode? status = null, string? url = null, Exception? inner = null)
        : base(message, inner)
    {
        StatusCode = status;
        Url = url;
    }
}

/// <summary>The repository does not exist, or is private and the token (if any) cannot see it.</summary>
public sealed class RepositoryNotFoundException : HubHttpException
{
    /// <summary>The repo id asked for.</summary>
    public string RepoId { get; }

    /// <summary>Creates the exception.</summary>
    public RepositoryNotFoundException(string repoId, string message, HttpStatusCode? status = null, string? url = null)
        : base(message, status, url) => RepoId = repoId;
}

/// <summary>The repository exists but the branch, tag or commit does not.</summary>
public sealed class RevisionNotFoundException : HubHttpException
{
    /// <summary>The repo id.</summary>
    public string RepoId { get; }
    /// <summary>The revision asked for.</summary>
    public string Revision { get; }

    /// <summary>Creates the exception.</summary>
    public RevisionNotFoundException(string repoId, string revision, string message, HttpStatusCode? status = null, string? url = null)
        : base(message, status, url)
    {
        RepoId = repoId;
        Revision = revision;
    }
}

/// <summary>The repository and revision exist but the file does not (remembered in <c>.no_exist/</c>).</summary>
public sealed class EntryNotFoundException : HubHttpException
{
    /// <summary>The repo id.</summary>
    public string RepoId { get; }
    /// <summary>The path inside the repo.</summary>
    public string Filename { get; }

    /// <summary>Creates the exception.</summary>
    public EntryNotFoundException(string repoId, string filename, string message, HttpStatusCode? status = null, string? url = null)
        : base(message, status, url)
    {
        RepoId = repoId;
        Filename = filename;
    }
}

/// <summary>401/403: the repo is gated or private and needs a (better) token.</summary>
public sealed class GatedRepoException : HubHttpException
{
    /// <summary>The repo id.</summary>
    public string RepoId { get; }

    /// <summary>Creates the exception.</summary>
    public GatedRepoException(string repoId, string message, HttpStatusCode? status = null, string? url = null)
        : base(message, status, url) => RepoId = repoId;
}

/// <summary>Offline (HF_HUB_OFFLINE or the hub unreachable) and the cache does not hold what was asked.</summary>
public sealed class OfflineCacheMissException : HubException
{
    /// <summary>The repo id.</summary>
    public string RepoId { get; }
    /// <summary>The missing file, or null for a whole snapshot / model info.</summary>
    public string? Filename { get; }
    /// <summary>The revision asked for.</summary>
    public string Revision { get; }

    /// <summary>Creates the exception.</summary>
    public OfflineCacheMissException(string repoId, string? filename, string revision, string reason, Exception? inner = null)
        : base(Format(repoId, filename, revision, reason), inner)
    {
        RepoId = repoId;
        Filename = filename;
        Revision = revision;
    }

    private static string Format(string repo, string? file, string rev, string reason) =>
        (file is null ? $"'{repo}' at revision '{rev}' is not in the local cache" : $"'{file}' of '{repo}' at revision '{rev}' is not in the local cache")
        + $" and {reason}. Download it once while online (HF_HUB_OFFLINE unset, hub reachable), or point HF_HUB_CACHE at a cache that holds it.";
}

/// <summary>Downloaded bytes do not match the hub's claim (sha256 of an LFS file or git blob sha1, or the size); nothing was kept.</summary>
public sealed class IntegrityException : HubException
{
    /// <summary>The repo id.</summary>
    public string RepoId { get; }
    /// <summary>The path inside the repo.</summary>
    public string Filename { get; }

    /// <summary>Creates the exception.</summary>
    public IntegrityException(string repoId, string filename, string message)
        : base($"{repoId}/{filename}: {message}")
    {
        RepoId = repoId;
        Filename = filename;
    }
}
