using Hub.Client;
using Hub.Tests;

namespace Hub.Client.Tests;

public class SnapshotTests
{
    [SkippableFact]
    public async Task Snapshot_of_fixture_repo_has_exact_cache_layout_and_second_load_makes_zero_requests()
    {
        var fixture = SharedDir.Require("fixtures/gpt2-tiny");
        await using var env = new TestEnv();
        Directory.CreateDirectory(Path.Combine(env.Root, "org"));
        Directory.CreateSymbolicLink(Path.Combine(env.Root, "org", "gpt2-tiny"), fixture);
        await env.StartAsync();

        string snap;
        string sha;
        using (var client = env.Client())
        {
            sha = (await client.ModelInfoAsync("org/gpt2-tiny")).Sha!;
            snap = await client.SnapshotDownloadAsync("org/gpt2-tiny");
        }
        var repo = env.RepoCache("org/gpt2-tiny");
        Assert.Equal(Path.Combine(repo, "snapshots", sha), snap);
        Assert.Equal(sha, File.ReadAllText(Path.Combine(repo, "refs", "main")));
        var names = Directory.GetFiles(fixture).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(names, Directory.GetFiles(snap).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray());
        foreach (var name in names)
        {
            var src = Path.Combine(fixture, name!);
            var pointer = new FileInfo(Path.Combine(snap, name!));
            var etag = pointer.Length > 1024 * 1024 || new FileInfo(src).Length > 1024 * 1024 ? TestEnv.Sha256(src) : TestEnv.GitSha1(src);
            Assert.Equal($"../../blobs/{etag}", pointer.LinkTarget);
            Assert.True(File.Exists(Path.Combine(repo, "blobs", etag)), $"blob {etag} of {name}");
            Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(pointer.FullName));
        }
        // LFS file named by its sha256, small files by their git blob sha1.
        Assert.True(File.Exists(Path.Combine(repo, "blobs", TestEnv.Sha256(Path.Combine(fixture, "model.safetensors")))));
        Assert.True(File.Exists(Path.Combine(repo, "blobs", TestEnv.GitSha1(Path.Combine(fixture, "config.json")))));
        Assert.Empty(Directory.GetFiles(Path.Combine(repo, "blobs"), "*.incomplete"));
        Assert.True(Directory.Exists(Path.Combine(env.CacheDir, ".locks", "models--org--gpt2-tiny")));

        // A second load (new client, as a new process would be) asks the server nothing.
        var before = env.Server.RequestCount;
        using (var again = env.Client())
        {
            Assert.Equal(snap, await again.SnapshotDownloadAsync("org/gpt2-tiny"));
            Assert.Equal(snap, await again.SnapshotDownloadAsync("org/gpt2-tiny", sha));
            Assert.Equal(Path.Combine(snap, "config.json"), await again.DownloadFileAsync("org/gpt2-tiny", "config.json"));
            Assert.Equal(Path.Combine(snap, "config.json"), again.TryLoadFromCache("org/gpt2-tiny", "config.json"));
            Assert.Equal(sha, await again.ResolveRevisionAsync("org/gpt2-tiny"));
            var info = await again.ModelInfoAsync("org/gpt2-tiny");
            Assert.Equal(sha, info.Sha);
            Assert.Contains(info.Siblings, s => s.RFilename == "model.safetensors" && s.Lfs is not null);
            await Assert.ThrowsAsync<EntryNotFoundException>(() => again.DownloadFileAsync("org/gpt2-tiny", "pytorch_model.bin")); // known from the saved listing
        }
        Assert.Equal(before, env.Server.RequestCount);
    }

    [Fact]
    public async Task Nested_files_get_deeper_relative_symlinks_and_subfolder_argument_works()
    {
        await using var env = new TestEnv();
        env.AddText("acme/nested", "config.json", "{}");
        env.AddText("acme/nested", "text_encoder/sub/config.json", "{\"a\":1}");
        await env.StartAsync();
        using var client = env.Client();
        var p = await client.DownloadFileAsync("acme/nested", "config.json", subfolder: "text_encoder/sub");
        var sha = (await client.ModelInfoAsync("acme/nested")).Sha!;
        Assert.Equal(Path.Combine(env.RepoCache("acme/nested"), "snapshots", sha, "text_encoder", "sub", "config.json"), p);
        Assert.Equal("../../../../blobs/" + TestEnv.GitSha1(Path.Combine(env.Root, "acme/nested/text_encoder/sub/config.json")), new FileInfo(p).LinkTarget);
        Assert.Equal("{\"a\":1}", File.ReadAllText(p));
    }

    [Fact]
    public async Task Allow_and_ignore_patterns_use_fnmatch_where_star_matches_slash()
    {
        await using var env = new TestEnv();
        env.AddText("acme/globs", "config.json", "{}");
        env.AddText("acme/globs", "sub/extra.json", "{}");
        env.AddText("acme/globs", "weights.bin", "x");
        env.AddText("acme/globs", "tokenizer.model", "t");
        await env.StartAsync();
        using var client = env.Client();
        var snap = await client.SnapshotDownloadAsync("acme/globs", allowPatterns: ["*.json", "tokenizer.model"], ignorePatterns: ["sub/"]);
        var got = Directory.GetFiles(snap, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(snap, f)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["config.json", "tokenizer.model"], got);

        var snap2 = await client.SnapshotDownloadAsync("acme/globs", allowPatterns: ["*.json"]);
        Assert.True(File.Exists(Path.Combine(snap2, "sub", "extra.json")));
        Assert.False(File.Exists(Path.Combine(snap2, "weights.bin")));
    }

    [Fact]
    public async Task Offline_mode_serves_cache_and_a_miss_names_repo_and_file()
    {
        await using var env = new TestEnv();
        env.AddText("acme/off", "config.json", "{\"x\":1}");
        env.AddText("acme/off", "tokenizer.json", "{}");
        await env.StartAsync();
        string cfg;
        using (var online = env.Client())
            cfg = await online.DownloadFileAsync("acme/off", "config.json");
        var before = env.Server.RequestCount;
        using var offline = env.Client(tweak: o => o.Offline = true);
        Assert.Equal(cfg, await offline.DownloadFileAsync("acme/off", "config.json"));
        var e = await Assert.ThrowsAsync<OfflineCacheMissException>(() => offline.DownloadFileAsync("acme/off", "tokenizer.json"));
        Assert.Contains("acme/off", e.Message);
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Equal("tokenizer.json", e.Filename);
        var e2 = await Assert.ThrowsAsync<OfflineCacheMissException>(() => offline.SnapshotDownloadAsync("acme/never"));
        Assert.Contains("acme/never", e2.Message);
        Assert.Equal(before, env.Server.RequestCount);
    }

    [Fact]
    public async Task Offline_snapshot_with_saved_listing_names_the_missing_file()
    {
        await using var env = new TestEnv();
        env.AddText("acme/part", "config.json", "{}");
        env.AddText("acme/part", "model.safetensors", "weights");
        await env.StartAsync();
        using (var online = env.Client())
            await online.SnapshotDownloadAsync("acme/part", allowPatterns: ["*.json"]);
        using var offline = env.Client(tweak: o => o.Offline = true);
        Assert.EndsWith(Path.DirectorySeparatorChar + (await offline.ModelInfoAsync("acme/part")).Sha, await offline.SnapshotDownloadAsync("acme/part", allowPatterns: ["*.json"]));
        var e = await Assert.ThrowsAsync<OfflineCacheMissException>(() => offline.SnapshotDownloadAsync("acme/part"));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("acme/part", e.Message);
    }

    [Fact]
    public async Task Unreachable_hub_falls_back_to_cached_snapshot_but_missing_revision_does_not()
    {
        await using var env = new TestEnv();
        env.AddText("acme/fb", "config.json", "{}");
        await env.StartAsync();
        string snap;
        using (var c = env.Client())
            snap = await c.SnapshotDownloadAsync("acme/fb");

        // 5xx from the hub: the cached snapshot of that revision is used (TTL 0 forces a request).
        env.MirrorOptions.Faults.FailFirstRequests = 1000;
        env.MirrorOptions.Faults.FailStatusCode = 500;
        using (var c = env.Client(tweak: o => { o.RevisionCacheTtl = TimeSpan.Zero; o.MaxRetries = 1; }))
        {
            Assert.Equal(snap, await c.SnapshotDownloadAsync("acme/fb"));
            Assert.EndsWith("config.json", await c.DownloadFileAsync("acme/fb", "config.json"));
        }
        env.MirrorOptions.Faults.FailFirstRequests = 0;

        // A revision the hub says does not exist is an error, cached or not.
        using (var c = env.Client(tweak: o => o.RevisionCacheTtl = TimeSpan.Zero))
        {
            var e = await Assert.ThrowsAsync<RevisionNotFoundException>(() => c.SnapshotDownloadAsync("acme/fb", "v9"));
            Assert.Contains("v9", e.Message);
            await Assert.ThrowsAsync<RepositoryNotFoundException>(() => c.SnapshotDownloadAsync("acme/missing"));
        }

        // Server gone entirely: connection refused also falls back.
        var port = env.Server.BaseAddress.Port;
        await env.Server.DisposeAsync();
        using (var c = new HubClient(new HubClientOptions { Endpoint = $"http://127.0.0.1:{port}", CacheDir = env.CacheDir, RevisionCacheTtl = TimeSpan.Zero, MaxRetries = 1, RetryBaseDelay = TimeSpan.FromMilliseconds(5) }))
        {
            Assert.Equal(snap, await c.SnapshotDownloadAsync("acme/fb"));
            var e = await Assert.ThrowsAsync<HubHttpException>(() => c.SnapshotDownloadAsync("acme/other"));
            Assert.Contains("acme/other", e.Message);
        }
    }

    [Fact]
    public async Task Entry_not_found_writes_no_exist_marker_and_is_then_answered_from_cache()
    {
        await using var env = new TestEnv();
        env.AddText("acme/ne", "config.json", "{}");
        await env.StartAsync();
        using var client = env.Client();
        var e = await Assert.ThrowsAsync<EntryNotFoundException>(() => client.DownloadFileAsync("acme/ne", "generation_config.json"));
        Assert.Contains("generation_config.json", e.Message);
        var sha = (await client.ModelInfoAsync("acme/ne")).Sha!;
        var marker = Path.Combine(env.RepoCache("acme/ne"), ".no_exist", sha, "generation_config.json");
        Assert.True(File.Exists(marker));
        Assert.Equal(0, new FileInfo(marker).Length);
        Assert.Equal(sha, File.ReadAllText(Path.Combine(env.RepoCache("acme/ne"), "refs", "main")));
        Assert.Equal(HubCache.LookupResult.KnownMissing, client.Cache.Lookup("acme/ne", "generation_config.json", "main", out _));
        var before = env.Server.RequestCount;
        await Assert.ThrowsAsync<EntryNotFoundException>(() => client.DownloadFileAsync("acme/ne", "generation_config.json", sha));
        Assert.Equal(before, env.Server.RequestCount);
    }

    [Fact]
    public async Task Branch_is_rechecked_after_ttl_and_new_commit_is_fetched()
    {
        await using var env = new TestEnv();
        env.AddText("acme/upd", "config.json", "{\"v\":1}");
        await env.StartAsync();
        using var client = env.Client(tweak: o => o.RevisionCacheTtl = TimeSpan.Zero);
        var s1 = await client.SnapshotDownloadAsync("acme/upd");
        env.AddText("acme/upd", "config.json", "{\"v\":2}");
        var s2 = await client.SnapshotDownloadAsync("acme/upd");
        Assert.NotEqual(s1, s2);
        Assert.Equal("{\"v\":2}", File.ReadAllText(Path.Combine(s2, "config.json")));
        Assert.Equal("{\"v\":1}", File.ReadAllText(Path.Combine(s1, "config.json")));
    }
}

public class ForeignCacheTests
{
    /// <summary>A cache laid out by huggingface_hub (no listing of ours) is used as is.</summary>
    [Fact]
    public async Task Cache_filled_by_huggingface_hub_is_reused_without_requests()
    {
        await using var env = new TestEnv();
        env.AddText("acme/other", "config.json", "{}"); // the server knows nothing of acme/py
        await env.StartAsync();
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        var repo = env.RepoCache("acme/py");
        var blob = Path.Combine(repo, "blobs", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        File.WriteAllText(blob, "{\"from\":\"python\"}");
        var snap = Path.Combine(repo, "snapshots", commit);
        Directory.CreateDirectory(Path.Combine(snap, "sub"));
        File.CreateSymbolicLink(Path.Combine(snap, "config.json"), "../../blobs/e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        File.CreateSymbolicLink(Path.Combine(snap, "sub", "tokenizer.json"), "../../../blobs/e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);

        using (var client = env.Client())
        {
            Assert.Equal(Path.Combine(snap, "config.json"), await client.DownloadFileAsync("acme/py", "config.json", commit));
            Assert.Equal(Path.Combine(snap, "sub", "tokenizer.json"), client.TryLoadFromCache("acme/py", "sub/tokenizer.json"));
            Assert.Null(client.TryLoadFromCache("acme/py", "missing.json"));
        }
        Assert.Equal(0, env.Server.RequestCount);

        using var offline = env.Client(tweak: o => o.Offline = true);
        Assert.Equal(snap, await offline.SnapshotDownloadAsync("acme/py"));
        Assert.Equal("{\"from\":\"python\"}", File.ReadAllText(await offline.DownloadFileAsync("acme/py", "config.json")));
        Assert.Equal(commit, await offline.ResolveRevisionAsync("acme/py"));
        Assert.Equal(0, env.Server.RequestCount);
    }
}
