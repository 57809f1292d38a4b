using Hub.Client;

namespace Hub.Client.Tests;

public class ResilienceTests
{
    [Fact]
    public async Task Body_cut_mid_file_resumes_with_range_and_blob_hashes_right()
    {
        await using var env = new TestEnv();
        const long size = 4 * 1024 * 1024 + 123;
        var src = env.AddFile("acme/big", "model.safetensors", size);
        env.MirrorOptions.Faults.CutBodyAfterBytes = 1_500_000;
        env.MirrorOptions.Faults.CutBodyTimes = 1;
        await env.StartAsync();
        using var client = env.Client();
        var p = await client.DownloadFileAsync("acme/big", "model.safetensors");
        var sha = TestEnv.Sha256(src);
        Assert.Equal(sha, TestEnv.Sha256(p));
        Assert.Equal("../../blobs/" + sha, new FileInfo(p).LinkTarget);
        Assert.True(env.Server.BytesServed < size * 3 / 2, $"served {env.Server.BytesServed} bytes for a {size}-byte file");
        // The resumed GET asks for the rest from what arrived before the cut (a reset may lose in-flight bytes).
        var resumed = env.Server.Requests.Single(r => r.Method == "GET" && r.Range is not null);
        var from = long.Parse(resumed.Range!["bytes=".Length..^1]);
        Assert.InRange(from, 1, 1_500_000);
        Assert.Equal(206, resumed.Status);
        Assert.Empty(Directory.GetFiles(Path.Combine(env.RepoCache("acme/big"), "blobs"), "*.incomplete"));
    }

    [Fact]
    public async Task Incomplete_file_left_by_an_earlier_run_is_resumed()
    {
        await using var env = new TestEnv();
        const long size = 3 * 1024 * 1024;
        var src = env.AddFile("acme/partial", "w.bin", size, seed: 7);
        env.MirrorOptions.Faults.CutBodyAfterBytes = 1_000_000;
        env.MirrorOptions.Faults.CutBodyTimes = 100;
        await env.StartAsync();
        using (var c = env.Client(tweak: o => o.MaxRetries = 0))
        {
            var e = await Assert.ThrowsAsync<HubHttpException>(() => c.DownloadFileAsync("acme/partial", "w.bin"));
            Assert.Contains("Run again to resume", e.Message);
        }
        var incomplete = Path.Combine(env.RepoCache("acme/partial"), "blobs", TestEnv.Sha256(src) + ".incomplete");
        var partial = new FileInfo(incomplete).Length;
        Assert.InRange(partial, 1, 1_000_000);
        env.MirrorOptions.Faults.CutBodyAfterBytes = null;
        env.Server.ResetCounters();
        using (var c = env.Client())
        {
            var p = await c.DownloadFileAsync("acme/partial", "w.bin");
            Assert.Equal(TestEnv.Sha256(src), TestEnv.Sha256(p));
        }
        Assert.True(size - partial == env.Server.BytesServed, $"partial {partial}, served {env.Server.BytesServed}: " + string.Join("; ", env.Server.Requests));
    }

    [Theory]
    [InlineData(503)]
    [InlineData(500)]
    [InlineData(429)]
    public async Task Transient_failures_then_success_are_retried(int status)
    {
        await using var env = new TestEnv();
        var src = env.AddFile("acme/flaky", "model.bin", 200_000);
        env.MirrorOptions.Faults.FailFirstRequests = 2;
        env.MirrorOptions.Faults.FailStatusCode = status;
        await env.StartAsync();
        using var client = env.Client();
        var p = await client.DownloadFileAsync("acme/flaky", "model.bin");
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(p));
        Assert.Equal(2, env.Server.Requests.Count(r => r.Status == status));
    }

    [Fact]
    public async Task Retry_after_header_of_429_is_honoured()
    {
        await using var env = new TestEnv();
        env.AddText("acme/rl", "config.json", "{}");
        env.MirrorOptions.Faults.FailFirstRequests = 1;
        env.MirrorOptions.Faults.FailStatusCode = 429;
        env.MirrorOptions.Faults.RetryAfter = TimeSpan.FromSeconds(1);
        await env.StartAsync();
        using var client = env.Client(); // base backoff is 10 ms: a ~1 s gap can only come from Retry-After
        await client.DownloadFileAsync("acme/rl", "config.json");
        var reqs = env.Server.Requests.ToArray();
        Assert.Equal(429, reqs[0].Status);
        Assert.True(reqs[1].ReceivedUtc - reqs[0].ReceivedUtc >= TimeSpan.FromMilliseconds(900), $"gap {(reqs[1].ReceivedUtc - reqs[0].ReceivedUtc).TotalMilliseconds} ms");
    }

    [Fact]
    public async Task Persistent_failures_give_up_after_max_retries_with_clear_error()
    {
        await using var env = new TestEnv();
        env.AddText("acme/down", "config.json", "{}");
        env.MirrorOptions.Faults.FailFirstRequests = 1000;
        env.MirrorOptions.Faults.FailStatusCode = 503;
        await env.StartAsync();
        using var client = env.Client(tweak: o => o.MaxRetries = 2);
        var e = await Assert.ThrowsAsync<HubHttpException>(() => client.DownloadFileAsync("acme/down", "config.json"));
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, e.StatusCode);
        Assert.Contains("503", e.Message);
        Assert.Contains("2 retries", e.Message);
        Assert.Contains("config.json", e.Message);
        Assert.Equal(3, env.Server.RequestCount);
    }

    [Theory]
    [InlineData(3 * 1024 * 1024)] // LFS: sha256 etag
    [InlineData(300 * 1024)]      // git blob sha1 etag
    public async Task Corrupted_body_is_rejected_and_leaves_nothing_in_blobs_or_snapshots(int size)
    {
        await using var env = new TestEnv();
        env.AddFile("acme/bad", "model.bin", size);
        env.MirrorOptions.Faults.CorruptBody = true;
        await env.StartAsync();
        using var client = env.Client();
        var e = await Assert.ThrowsAsync<IntegrityException>(() => client.DownloadFileAsync("acme/bad", "model.bin"));
        Assert.Contains("model.bin", e.Message);
        Assert.Contains("acme/bad", e.Message);
        var repo = env.RepoCache("acme/bad");
        Assert.Empty(Directory.GetFiles(Path.Combine(repo, "blobs")));
        Assert.False(Directory.Exists(Path.Combine(repo, "snapshots")) && Directory.EnumerateFiles(Path.Combine(repo, "snapshots"), "*", SearchOption.AllDirectories).Any());
    }

    [Fact]
    public async Task Two_clients_downloading_the_same_large_file_end_with_one_correct_blob()
    {
        await using var env = new TestEnv();
        const long size = 20 * 1024 * 1024;
        var src = env.AddFile("acme/huge", "model.safetensors", size, seed: 3);
        var sha = TestEnv.Sha256(src);
        await env.StartAsync();
        using var a = env.Client();
        using var b = env.Client();
        var ta = Task.Run(() => a.DownloadFileAsync("acme/huge", "model.safetensors"));
        var tb = Task.Run(() => b.DownloadFileAsync("acme/huge", "model.safetensors"));
        var paths = await Task.WhenAll(ta, tb);
        Assert.Equal(paths[0], paths[1]);
        var blobs = Directory.GetFiles(Path.Combine(env.RepoCache("acme/huge"), "blobs"));
        Assert.Equal([Path.Combine(env.RepoCache("acme/huge"), "blobs", sha)], blobs);
        Assert.Equal(sha, TestEnv.Sha256(paths[0]));
        Assert.Equal(size, env.Server.BytesServed); // the lock made the second client wait and reuse the blob
        Assert.True(File.Exists(Path.Combine(env.CacheDir, ".locks", "models--acme--huge", sha + ".lock")));
    }
}

/// <summary>Measures process-wide allocations, so it must not overlap other tests.</summary>
[Collection("NonParallel")]
public class BoundedMemoryTests
{
    [Fact]
    public async Task Sixty_four_concurrent_downloads_complete_with_bounded_memory()
    {
        await using var env = new TestEnv();
        const int files = 64;
        const long size = 1536 * 1024;
        for (var i = 0; i < files; i++) env.AddFile("acme/many", $"shard-{i:D2}.bin", size, seed: i);
        await env.StartAsync();
        using var client = env.Client();
        await client.ModelInfoAsync("acme/many"); // warm the server's hashes and the connection pool
        GC.Collect();
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var tasks = Enumerable.Range(0, files).Select(i => Task.Run(() => client.DownloadFileAsync("acme/many", $"shard-{i:D2}.bin"))).ToArray();
        var paths = await Task.WhenAll(tasks);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        Assert.Equal(files, paths.Distinct().Count());
        for (var i = 0; i < files; i += 9)
            Assert.Equal(TestEnv.Sha256(Path.Combine(env.Root, "acme/many", $"shard-{i:D2}.bin")), TestEnv.Sha256(paths[i]));
        // Client and server (same process) together allocate far less than the bytes moved: nothing buffers whole files.
        Assert.True(allocated < files * size / 2, $"allocated {allocated} bytes to move {files * size}");
    }
}

public class TimeoutAndRedirectTests
{
    [Fact]
    public async Task Slow_first_answer_hits_the_per_attempt_timeout_and_is_retried()
    {
        await using var env = new TestEnv();
        env.AddText("acme/slow", "config.json", "{}");
        env.MirrorOptions.Faults.Delay = TimeSpan.FromSeconds(5);
        env.MirrorOptions.Faults.DelayFirstRequests = 1;
        await env.StartAsync();
        using var client = env.Client(tweak: o => o.EtagTimeout = TimeSpan.FromMilliseconds(300));
        var p = await client.DownloadFileAsync("acme/slow", "config.json");
        Assert.Equal("{}", File.ReadAllText(p));
        Assert.True(env.Server.RequestCount >= 3); // timed-out HEAD, HEAD, GET
    }

    [Fact]
    public async Task Always_slow_hub_gives_up_with_timeout_error()
    {
        await using var env = new TestEnv();
        env.AddText("acme/slow", "config.json", "{}");
        env.MirrorOptions.Faults.Delay = TimeSpan.FromSeconds(5);
        await env.StartAsync();
        using var client = env.Client(tweak: o => { o.EtagTimeout = TimeSpan.FromMilliseconds(200); o.MaxRetries = 1; });
        var e = await Assert.ThrowsAsync<HubHttpException>(() => client.DownloadFileAsync("acme/slow", "config.json"));
        Assert.Contains("timed out", e.Message);
        Assert.Null(e.StatusCode);
    }

    [Fact]
    public async Task Stalled_body_is_abandoned_after_download_timeout_and_resumed()
    {
        await using var env = new TestEnv();
        const long size = 2 * 1024 * 1024;
        var src = env.AddFile("acme/stall", "model.bin", size);
        env.MirrorOptions.Faults.StallBodyAfterBytes = 700_000;
        await env.StartAsync();
        var reports = new List<DownloadProgress>();
        using var client = env.Client(tweak: o => o.DownloadTimeout = TimeSpan.FromMilliseconds(500));
        var p = await client.DownloadFileAsync("acme/stall", "model.bin", progress: new SyncProgress(reports));
        Assert.Equal(TestEnv.Sha256(src), TestEnv.Sha256(p));
        Assert.Contains(env.Server.Requests, r => r.Range is not null);
        Assert.True(env.Server.BytesServed < size * 3 / 2);
        var last = reports[^1];
        Assert.True(last.Completed);
        Assert.Equal(size, last.BytesDownloaded);
        Assert.Equal(size, last.TotalBytes);
        Assert.Equal("model.bin", last.Filename);
        Assert.True(reports.Select(r => r.BytesDownloaded).SequenceEqual(reports.Select(r => r.BytesDownloaded).Order()));
    }

    [Fact]
    public async Task Renamed_repo_relative_redirect_is_followed_with_the_token()
    {
        await using var env = new TestEnv();
        env.AddText("acme/new-name", "config.json", "{\"renamed\":true}");
        env.MirrorOptions.RepoRenames["acme/old-name"] = "acme/new-name";
        env.MirrorOptions.GatedRepos.Add("acme/new-name");
        env.MirrorOptions.RequiredToken = "hf_tok";
        await env.StartAsync();
        using var client = env.Client("hf_tok");
        var p = await client.DownloadFileAsync("acme/old-name", "config.json");
        Assert.Equal("{\"renamed\":true}", File.ReadAllText(p));
        Assert.Contains(Path.Combine("models--acme--old-name", "snapshots"), p); // cached under the id the caller used, as huggingface_hub does
        Assert.Contains(env.Server.Requests, r => r.Status == 307);
        Assert.All(env.Server.Requests, r => Assert.True(r.HasAuthorization));
        var snap = await client.SnapshotDownloadAsync("acme/old-name");
        Assert.True(File.Exists(Path.Combine(snap, "config.json")));
    }

    private sealed class SyncProgress(List<DownloadProgress> sink) : IProgress<DownloadProgress>
    {
        public void Report(DownloadProgress value) { lock (sink) sink.Add(value); }
    }
}
