using System.Security.Cryptography;
using System.Text;
using Hub.Client;
using Hub.Mirror;

namespace Hub.Client.Tests;

/// <summary>A temp mirror root + cache, a real MirrorServer on a random loopback port, and client options with small retry delays.</summary>
internal sealed class TestEnv : IAsyncDisposable
{
    public string Dir { get; } = Hub.Tests.SharedDir.TempDir("hubclient");
    public string Root => Path.Combine(Dir, "root");
    public string CacheDir => Path.Combine(Dir, "cache");
    public MirrorServer Server { get; private set; } = null!;
    public MirrorOptions MirrorOptions { get; } = new();

    public TestEnv()
    {
        Directory.CreateDirectory(Root);
        MirrorOptions.Root = Root;
    }

    public async Task<TestEnv> StartAsync()
    {
        Server = await MirrorServer.StartAsync(MirrorOptions);
        return this;
    }

    public HubClientOptions Options(string? token = null) => new()
    {
        Endpoint = Server.BaseAddress.ToString().TrimEnd('/'),
        CacheDir = CacheDir,
        Token = token,
        MaxRetries = 3,
        RetryBaseDelay = TimeSpan.FromMilliseconds(10),
        RetryMaxDelay = TimeSpan.FromSeconds(2),
        EtagTimeout = TimeSpan.FromSeconds(20),
        DownloadTimeout = TimeSpan.FromSeconds(20),
    };

    public HubClient Client(string? token = null, Action<HubClientOptions>? tweak = null)
    {
        var o = Options(token);
        tweak?.Invoke(o);
        return new HubClient(o);
    }

    /// <summary>Writes a file into repo <paramref name="repoId"/>: deterministic pseudo-random bytes.</summary>
    public string AddFile(string repoId, string path, long size, int seed = 1)
    {
        var full = Path.Combine(Root, repoId, path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var rng = new Random(seed);
        var buf = new byte[1 << 16];
        using var fs = File.Create(full);
        for (long left = size; left > 0;)
        {
            rng.NextBytes(buf);
            var n = (int)Math.Min(buf.Length, left);
            fs.Write(buf, 0, n);
            left -= n;
        }
        return full;
    }

    public string AddText(string repoId, string path, string text)
    {
        var full = Path.Combine(Root, repoId, path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
        return full;
    }

    public string RepoCache(string repoId) => Path.Combine(CacheDir, "models--" + repoId.Replace("/", "--", StringComparison.Ordinal));

    public static string Sha256(string file)
    {
        using var fs = File.OpenRead(file);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }

    public static string GitSha1(string file)
    {
        var bytes = File.ReadAllBytes(file);
        var header = Encoding.ASCII.GetBytes($"blob {bytes.Length}\0");
        return Convert.ToHexStringLower(SHA1.HashData([.. header, .. bytes]));
    }

    public async ValueTask DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
