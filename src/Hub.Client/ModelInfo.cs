using System.Text.Json;

namespace Hub.Client;

/// <summary>LFS facts of one file: the sha256 that names its blob and the real size (not the pointer's).</summary>
public sealed record BlobLfsInfo(long Size, string Sha256, long? PointerSize);

/// <summary>One file of a repo at a revision, as <c>siblings[]</c> of the model info API lists it.</summary>
public sealed record RepoSibling(string RFilename, long? Size = null, string? BlobId = null, BlobLfsInfo? Lfs = null);

/// <summary>What <c>/api/models/{repo}[/revision/{rev}]</c> says about a repo; <see cref="Sha"/> pins a branch to a commit.</summary>
public sealed class ModelInfo
{
    /// <summary>Repo id.</summary>
    public required string Id { get; init; }
    /// <summary>Commit the asked revision resolves to.</summary>
    public string? Sha { get; init; }
    /// <summary>Files at that commit.</summary>
    public IReadOnlyList<RepoSibling> Siblings { get; init; } = [];
    /// <summary>Private repo.</summary>
    public bool Private { get; init; }
    /// <summary>Gating: null/"false" when open, "auto" or "manual" when gated.</summary>
    public string? Gated { get; init; }
    /// <summary>Disabled by the hub.</summary>
    public bool Disabled { get; init; }
    /// <summary>Last change.</summary>
    public DateTimeOffset? LastModified { get; init; }
    /// <summary>Tags.</summary>
    public IReadOnlyList<string> Tags { get; init; } = [];
    /// <summary>Task, e.g. text-generation.</summary>
    public string? PipelineTag { get; init; }
    /// <summary>Library, e.g. transformers.</summary>
    public string? LibraryName { get; init; }

    /// <summary>Parses the hub's JSON; unknown fields are ignored, the sha256 key is <c>lfs.sha256</c> (or <c>lfs.oid</c> as in tree entries).</summary>
    public static ModelInfo Parse(string json, string repoIdForErrors)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new JsonException("root is not an object");
            var siblings = new List<RepoSibling>();
            if (r.TryGetProperty("siblings", out var sibs) && sibs.ValueKind == JsonValueKind.Array)
            {
                foreach (var s in sibs.EnumerateArray())
                {
                    var name = Str(s, "rfilename");
                    if (name is null) continue;
                    BlobLfsInfo? lfs = null;
                    if (s.TryGetProperty("lfs", out var l) && l.ValueKind == JsonValueKind.Object)
                    {
                        var sha = Str(l, "sha256") ?? Str(l, "oid");
                        if (sha is not null) lfs = new BlobLfsInfo(Long(l, "size") ?? 0, sha, Long(l, "pointerSize"));
                    }
                    siblings.Add(new RepoSibling(name, Long(s, "size"), Str(s, "blobId"), lfs));
                }
            }
            string? gated = null;
            if (r.TryGetProperty("gated", out var g))
                gated = g.ValueKind switch { JsonValueKind.String => g.GetString(), JsonValueKind.True => "true", _ => null };
            var tags = new List<string>();
            if (r.TryGetProperty("tags", out var t) && t.ValueKind == JsonValueKind.Array)
                foreach (var x in t.EnumerateArray()) if (x.ValueKind == JsonValueKind.String) tags.Add(x.GetString()!);
            DateTimeOffset? lm = null;
            if (Str(r, "lastModified") is { } lms && DateTimeOffset.TryParse(lms, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var d)) lm = d;
            return new ModelInfo
            {
                Id = Str(r, "id") ?? Str(r, "modelId") ?? repoIdForErrors,
                Sha = Str(r, "sha"),
                Siblings = siblings,
                Private = Bool(r, "private"),
                Gated = gated,
                Disabled = Bool(r, "disabled"),
                LastModified = lm,
                Tags = tags,
                PipelineTag = Str(r, "pipeline_tag"),
                LibraryName = Str(r, "library_name"),
            };
        }
        catch (JsonException e)
        {
            throw new HubHttpException($"model info of '{repoIdForErrors}' is not valid JSON ({e.Message}); is HF_ENDPOINT a Hugging Face-compatible hub?");
        }
    }

    /// <summary>Serializes the fields a downloader needs (kept next to the cache so a pinned snapshot can be checked without a request).</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("id", Id);
            if (Sha is not null) w.WriteString("sha", Sha);
            w.WriteBoolean("private", Private);
            w.WriteBoolean("disabled", Disabled);
            if (LastModified is { } lm) w.WriteString("lastModified", lm.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture));
            if (PipelineTag is not null) w.WriteString("pipeline_tag", PipelineTag);
            if (LibraryName is not null) w.WriteString("library_name", LibraryName);
            w.WriteStartArray("tags");
            foreach (var t in Tags) w.WriteStringValue(t);
            w.WriteEndArray();
            if (Gated is not null) w.WriteString("gated", Gated); else w.WriteBoolean("gated", false);
            w.WriteStartArray("siblings");
            foreach (var s in Siblings)
            {
                w.WriteStartObject();
                w.WriteString("rfilename", s.RFilename);
                if (s.Size is { } size) w.WriteNumber("size", size);
                if (s.BlobId is not null) w.WriteString("blobId", s.BlobId);
                if (s.Lfs is not null)
                {
                    w.WriteStartObject("lfs");
                    w.WriteNumber("size", s.Lfs.Size);
                    w.WriteString("sha256", s.Lfs.Sha256);
                    if (s.Lfs.PointerSize is { } ps) w.WriteNumber("pointerSize", ps);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static long? Long(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var x) ? x : null;

    private static bool Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;
}

/// <summary>Progress of one file: bytes on disk so far (including a resumed prefix) and the total when known.</summary>
public readonly record struct DownloadProgress(string RepoId, string Filename, long BytesDownloaded, long? TotalBytes, bool Completed);
