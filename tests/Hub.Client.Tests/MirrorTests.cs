using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Hub.Client;
using Hub.Mirror;
using Microsoft.Extensions.DependencyInjection;

namespace Hub.Client.Tests;

[Collection("NonParallel")]
public class MirrorTests
{
    private static HttpClient Raw() => new(new SocketsHttpHandler { AllowAutoRedirect = false });

    [Fact]
    public async Task Model_info_lists_siblings_with_sizes_and_lfs_sha256()
    {
        await using var env = new TestEnv();
        var small = env.AddText("acme/info", "config.json", "{\"model_type\":\"gpt2\"}");
        var big = env.AddFile("acme/info", "model.safetensors", 1024 * 1024 + 1);
        await env.StartAsync();
        using var http = Raw();
        var json = await http.GetStringAsync(new Uri(env.Server.BaseAddress, "api/models/acme/info"));
        var info = ModelInfo.Parse(json, "acme/info");
        Assert.Equal("acme/info", info.Id);
        Assert.Matches("^[0-9a-f]{40}$", info.Sha!);
        var cfg = info.Siblings.Single(s => s.RFilename == "config.json");
        Assert.Equal(new FileInfo(small).Length, cfg.Size);
        Assert.Equal(TestEnv.GitSha1(small), cfg.BlobId);
        Assert.Null(cfg.Lfs);
        var w = info.Siblings.Single(s => s.RFilename == "model.safetensors");
        Assert.Equal(TestEnv.Sha256(big), w.Lfs!.Sha256);
        Assert.Equal(1024 * 1024 + 1, w.Lfs.Size);

        var byRev = ModelInfo.Parse(await http.GetStringAsync(new Uri(env.Server.BaseAddress, $"api/models/acme/info/revision/{info.Sha}")), "acme/info");
        Assert.Equal(info.Sha, byRev.Sha);
        using var missingRev = await http.GetAsync(new Uri(env.Server.BaseAddress, "api/models/acme/info/revision/nope"));
        Assert.Equal(HttpStatusCode.NotFound, missingRev.StatusCode);
        Assert.Equal("RevisionNotFound", missingRev.Headers.GetValues("X-Error-Code").Single());
        using var missingRepo = await http.GetAsync(new Uri(env.Server.BaseAddress, "api/models/acme/nothing"));
        Assert.Equal("RepoNotFound", missingRepo.Headers.GetValues("X-Error-Code").Single());
    }

    [Fact]
    public async Task A_hub_weight_cache_folder_is_not_served()
    {
        await using var env = new TestEnv();
        env.AddText("acme/ir", "model.ir.json", "{}");
        env.AddText("acme/ir", "model_cache/x4-0123456789abcdef01234567.bin", "derived");
        env.AddText("acme/ir", "sub/model_cache/kept.bin", "a repo file");
        await env.StartAsync();
        using var http = Raw();
        var info = ModelInfo.Parse(await http.GetStringAsync(new Uri(env.Server.BaseAddress, "api/models/acme/ir")), "acme/ir");
        Assert.Equal(["model.ir.json", "sub/model_cache/kept.bin"], info.Siblings.Select(s => s.RFilename).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Commit_sha_is_derived_from_content_and_stable_across_restarts()
    {
        await using var env = new TestEnv();
        env.AddText("acme/stable", "a.txt", "one");
        env.AddText("acme/stable", "b/c.txt", "two");
        await env.StartAsync();
        using var http = Raw();
        async Task<string> Sha(Uri b) => JsonDocument.Parse(await http.GetStringAsync(new Uri(b, "api/models/acme/stable"))).RootElement.GetProperty("sha").GetString()!;
        var first = await Sha(env.Server.BaseAddress);
        await using (var second = await MirrorServer.StartAsync(new MirrorOptions { Root = env.Root }))
            Assert.Equal(first, await Sha(second.BaseAddress));
        env.AddText("acme/stable", "a.txt", "ONE");
        Assert.NotEqual(first, await Sha(env.Server.BaseAddress));
    }

    [Fact]
    public async Task Resolve_serves_head_get_and_range_with_hub_headers()
    {
        await using var env = new TestEnv();
        var big = env.AddFile("acme/res", "model.safetensors", 2 * 1024 * 1024);
        var small = env.AddText("acme/res", "config.json", "{\"n\":1}");
        await env.StartAsync();
        using var http = Raw();
        var sha = JsonDocument.Parse(await http.GetStringAsync(new Uri(env.Server.BaseAddress, "api/models/acme/res"))).RootElement.GetProperty("sha").GetString();

        using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, new Uri(env.Server.BaseAddress, "acme/res/resolve/main/model.safetensors")));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(sha, head.Headers.GetValues("X-Repo-Commit").Single());
        Assert.Equal($"\"{TestEnv.Sha256(big)}\"", head.Headers.GetValues("X-Linked-Etag").Single());
        Assert.Equal((2 * 1024 * 1024).ToString(), head.Headers.GetValues("X-Linked-Size").Single());

        using var smallHead = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, new Uri(env.Server.BaseAddress, $"acme/res/resolve/{sha}/config.json")));
        Assert.Equal($"\"{TestEnv.GitSha1(small)}\"", smallHead.Headers.ETag!.Tag);
        Assert.False(smallHead.Headers.Contains("X-Linked-Etag"));

        var req = new HttpRequestMessage(HttpMethod.Get, new Uri(env.Server.BaseAddress, "acme/res/resolve/main/model.safetensors"));
        req.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(1000, 1999);
        using var part = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.PartialContent, part.StatusCode);
        Assert.Equal("bytes 1000-1999/2097152", part.Content.Headers.ContentRange!.ToString());
        Assert.Equal(File.ReadAllBytes(big).AsSpan(1000, 1000).ToArray(), await part.Content.ReadAsByteArrayAsync());

        using var missing = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, new Uri(env.Server.BaseAddress, "acme/res/resolve/main/nope.json")));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("EntryNotFound", missing.Headers.GetValues("X-Error-Code").Single());
        Assert.Equal(sha, missing.Headers.GetValues("X-Repo-Commit").Single());
    }

    [Theory]
    [InlineData("/acme/trav/resolve/main/..%2F..%2Fsecret.txt")]
    [InlineData("/acme/trav/resolve/main/%2e%2e/%2e%2e/secret.txt")]
    [InlineData("/acme/trav/resolve/main/%2Fetc%2Fpasswd")]
    [InlineData("/acme/trav/resolve/main/sub/..%5C..%5Csecret.txt")]
    [InlineData("/acme/trav/resolve/main/../../secret.txt")]
    public async Task Path_traversal_is_rejected(string rawPath)
    {
        await using var env = new TestEnv();
        env.AddText("acme/trav", "config.json", "{}");
        File.WriteAllText(Path.Combine(env.Root, "secret.txt"), "TOP SECRET");
        File.WriteAllText(Path.Combine(env.Root, "acme", "secret.txt"), "TOP SECRET");
        await env.StartAsync();
        // Raw socket: HttpClient would normalize the dot segments before sending.
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, env.Server.BaseAddress.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {rawPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
        using var reader = new StreamReader(stream);
        var response = await reader.ReadToEndAsync();
        var status = int.Parse(response.Split(' ')[1]);
        Assert.True(status is 400 or 404, response);
        Assert.DoesNotContain("TOP SECRET", response);
    }

    [Fact]
    public async Task Org_less_repo_ids_are_served()
    {
        await using var env = new TestEnv();
        env.AddText("gpt2", "config.json", "{\"n_layer\":2}");
        await env.StartAsync();
        using var client = env.Client();
        var p = await client.DownloadFileAsync("gpt2", "config.json");
        Assert.Contains(Path.Combine("models--gpt2", "snapshots"), p);
        Assert.Equal("{\"n_layer\":2}", File.ReadAllText(p));
    }

    [Fact]
    public async Task AddHubClient_registers_a_typed_client_with_retries()
    {
        await using var env = new TestEnv();
        env.AddText("acme/di", "config.json", "{}");
        env.MirrorOptions.Faults.FailFirstRequests = 2;
        await env.StartAsync();
        var services = new ServiceCollection();
        services.AddHubClient(o =>
        {
            o.Endpoint = env.Server.BaseAddress.ToString();
            o.CacheDir = env.CacheDir;
            o.Token = null;
            o.Offline = false;
            o.RetryBaseDelay = TimeSpan.FromMilliseconds(10);
        });
        await using var sp = services.BuildServiceProvider();
        var client = sp.GetRequiredService<HubClient>();
        var p = await client.DownloadFileAsync("acme/di", "config.json");
        Assert.Equal("{}", File.ReadAllText(p));
        Assert.Equal(2, env.Server.Requests.Count(r => r.Status == 503));
    }

    [SkippableFact]
    public async Task Shared_models_folder_served_as_hub_downloads_karpathy_tinyllamas()
    {
        var models = Hub.Tests.SharedDir.Require("models/karpathy/tinyllamas");
        await using var env = new TestEnv();
        await using var server = await MirrorServer.StartAsync(new MirrorOptions { Root = Path.GetDirectoryName(Path.GetDirectoryName(models))! });
        using var client = new HubClient(new HubClientOptions { Endpoint = server.BaseAddress.ToString(), CacheDir = env.CacheDir });
        var snap = await client.SnapshotDownloadAsync("karpathy/tinyllamas", allowPatterns: ["stories260K/*"]);
        var bin = Path.Combine(snap, "stories260K", "stories260K.bin");
        Assert.Equal(TestEnv.Sha256(Path.Combine(models, "stories260K", "stories260K.bin")), TestEnv.Sha256(bin));
        Assert.True(File.Exists(Path.Combine(snap, "stories260K", "tok512.bin")));
    }
}
