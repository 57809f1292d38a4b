using System.Collections.Concurrent;
using Hub.Client;
using Microsoft.Extensions.Logging;

namespace Hub.Client.Tests;

public class AuthTests
{
    private const string Token = "hf_SecretTokenValue_123456789";

    [Fact]
    public async Task Token_goes_to_the_hub_host_but_not_to_a_redirect_host()
    {
        await using var env = new TestEnv();
        var src = env.AddFile("acme/gated", "model.safetensors", 2 * 1024 * 1024);
        env.AddText("acme/gated", "config.json", "{}");
        env.MirrorOptions.GatedRepos.Add("acme/gated");
        env.MirrorOptions.RequiredToken = Token;
        env.MirrorOptions.Faults.RedirectLfsToHost = "localhost";
        await env.StartAsync();
        using var client = env.Client(Token);
        var snap = await client.SnapshotDownloadAsync("acme/gated");
        Assert.Equal(TestEnv.Sha256(src), TestEnv.Sha256(Path.Combine(snap, "model.safetensors")));
        var hubRequests = env.Server.Requests.Where(r => !r.Path.StartsWith("/_cdn/", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(hubRequests);
        Assert.All(hubRequests, r => Assert.True(r.HasAuthorization, $"{r.Method} {r.Path} lacked the token"));
        Assert.All(hubRequests, r => Assert.Equal("127.0.0.1", r.Host));
        Assert.True(env.Server.CdnRequestCount > 0);
        Assert.Equal(0, env.Server.CdnRequestsWithAuthorization);
        Assert.All(env.Server.Requests.Where(r => r.Path.StartsWith("/_cdn/", StringComparison.Ordinal)), r => Assert.Equal("localhost", r.Host));
    }

    [Fact]
    public async Task Missing_token_gives_gated_error_mentioning_HF_TOKEN()
    {
        await using var env = new TestEnv();
        env.AddText("acme/gated", "config.json", "{}");
        env.MirrorOptions.GatedRepos.Add("acme/gated");
        env.MirrorOptions.RequiredToken = Token;
        await env.StartAsync();
        using var client = env.Client();
        var e = await Assert.ThrowsAsync<GatedRepoException>(() => client.DownloadFileAsync("acme/gated", "config.json"));
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, e.StatusCode);
        Assert.Contains("HF_TOKEN", e.Message);
        Assert.Contains("acme/gated", e.Message);
        var e2 = await Assert.ThrowsAsync<GatedRepoException>(() => client.SnapshotDownloadAsync("acme/gated"));
        Assert.Contains("HF_TOKEN", e2.Message);
    }

    [Fact]
    public async Task Token_never_appears_in_logs_or_exception_messages()
    {
        await using var env = new TestEnv();
        env.AddText("acme/gated", "config.json", "{}");
        env.AddFile("acme/gated", "model.bin", 100_000);
        env.MirrorOptions.GatedRepos.Add("acme/gated");
        env.MirrorOptions.RequiredToken = "hf_the_right_one";
        env.MirrorOptions.Faults.FailFirstRequests = 2; // make the retry path log too
        var serverLines = new ConcurrentQueue<string>();
        env.MirrorOptions.RequestLog = serverLines.Enqueue;
        await env.StartAsync();
        var sink = new ListLogger();
        var o = env.Options(Token);
        using var client = new HubClient(o, logger: sink);
        var errors = new List<Exception>
        {
            await Assert.ThrowsAsync<GatedRepoException>(() => client.DownloadFileAsync("acme/gated", "config.json")),
            await Assert.ThrowsAsync<GatedRepoException>(() => client.SnapshotDownloadAsync("acme/gated")),
            await Assert.ThrowsAsync<GatedRepoException>(() => client.ModelInfoAsync("acme/gated")),
        };
        using var offline = new HubClient(new HubClientOptions { Endpoint = o.Endpoint, CacheDir = o.CacheDir, Token = Token, Offline = true }, logger: sink);
        errors.Add(await Assert.ThrowsAsync<OfflineCacheMissException>(() => offline.DownloadFileAsync("acme/gated", "config.json")));
        Assert.NotEmpty(sink.Lines);
        Assert.All(errors, e => Assert.DoesNotContain(Token, e.ToString()));
        Assert.All(sink.Lines, l => Assert.DoesNotContain(Token, l));
        Assert.All(serverLines, l => Assert.DoesNotContain(Token, l));
        Assert.Contains("not allowed", errors[0].Message); // says a token was sent and refused
    }

    private sealed class ListLogger : ILogger<HubClient>
    {
        public ConcurrentQueue<string> Lines { get; } = new();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => Lines.Enqueue(formatter(state, exception) + " " + exception);
    }
}
