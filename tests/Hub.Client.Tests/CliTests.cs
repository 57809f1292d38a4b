using System.CommandLine;
using System.Text;
using System.Text.RegularExpressions;
using Hub.Cli.Commands;
using Hub.Tests;

namespace Hub.Client.Tests;

/// <summary>Tests that touch process environment variables or measure process-wide allocations run alone.</summary>
[CollectionDefinition("NonParallel", DisableParallelization = true)]
public sealed class NonParallelCollection;

[Collection("NonParallel")]
public class CliTests
{
    [SkippableFact]
    public async Task Hub_serve_of_shared_models_and_hub_download_with_HF_ENDPOINT_fill_the_cache()
    {
        var models = SharedDir.Require("models");
        SharedDir.Require("models/karpathy/tinyllamas/stories260K/stories260K.bin");
        var cache = SharedDir.TempDir("clicache");
        var serveOut = new LineWriter();
        using var stop = new CancellationTokenSource();
        var serve = new RootCommand { ServeCommand.Create() }.Parse(["serve", models, "--port", "0"])
            .InvokeAsync(new InvocationConfiguration { Output = serveOut, Error = serveOut }, stop.Token);
        string? url = null;
        for (var i = 0; i < 200 && url is null; i++)
        {
            url = serveOut.Lines.Select(l => Regex.Match(l, @"^Serving .* at (http://\S+)$")).FirstOrDefault(m => m.Success)?.Groups[1].Value;
            if (url is null) { Assert.False(serve.IsCompleted, string.Join('\n', serveOut.Lines)); await Task.Delay(50); }
        }
        Assert.NotNull(url);
        Assert.StartsWith("http://127.0.0.1:", url);

        var saved = (Environment.GetEnvironmentVariable("HF_ENDPOINT"), Environment.GetEnvironmentVariable("HF_HUB_CACHE"), Environment.GetEnvironmentVariable("HF_HUB_OFFLINE"));
        try
        {
            Environment.SetEnvironmentVariable("HF_ENDPOINT", url);
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", cache);
            Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", null);
            var output = new LineWriter();
            var rc = await new RootCommand { DownloadCommand.Create() }.Parse(["download", "karpathy/tinyllamas"])
                .InvokeAsync(new InvocationConfiguration { Output = output, Error = output });
            Assert.True(rc == 0, string.Join('\n', output.Lines));
            var snap = output.Lines.Last();
            Assert.StartsWith(Path.Combine(cache, "models--karpathy--tinyllamas", "snapshots"), snap);
            foreach (var f in Directory.GetFiles(Path.Combine(models, "karpathy", "tinyllamas"), "*", SearchOption.AllDirectories))
            {
                var rel = Path.GetRelativePath(Path.Combine(models, "karpathy", "tinyllamas"), f);
                Assert.Equal(TestEnv.Sha256(f), TestEnv.Sha256(Path.Combine(snap, rel)));
            }

            // Offline with --offline: served from the cache; a missing repo is a clear error, exit code 1.
            var off = new LineWriter();
            Assert.Equal(0, await new RootCommand { DownloadCommand.Create() }.Parse(["download", "karpathy/tinyllamas", "stories260K/tok512.bin", "--offline", "-q"])
                .InvokeAsync(new InvocationConfiguration { Output = off, Error = off }));
            Assert.EndsWith(Path.Combine("stories260K", "tok512.bin"), off.Lines.Last());
            var miss = new LineWriter();
            Assert.Equal(1, await new RootCommand { DownloadCommand.Create() }.Parse(["download", "karpathy/other", "--offline"])
                .InvokeAsync(new InvocationConfiguration { Output = miss, Error = miss }));
            Assert.Contains(miss.Lines, l => l.StartsWith("error:", StringComparison.Ordinal) && l.Contains("karpathy/other"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("HF_ENDPOINT", saved.Item1);
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", saved.Item2);
            Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", saved.Item3);
            await stop.CancelAsync();
            Assert.Equal(0, await serve);
            Directory.Delete(cache, true);
        }
        Assert.Contains(serveOut.Lines, l => l.StartsWith("Stopped after", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Hub_serve_of_a_missing_folder_fails_with_exit_code_2()
    {
        var w = new LineWriter();
        var rc = await new RootCommand { ServeCommand.Create() }.Parse(["serve", "/nonexistent/hub-root"]).InvokeAsync(new InvocationConfiguration { Output = w, Error = w });
        Assert.Equal(2, rc);
        Assert.Contains(w.Lines, l => l.Contains("/nonexistent/hub-root"));
    }

    /// <summary>A thread-safe writer that keeps complete lines.</summary>
    private sealed class LineWriter : TextWriter
    {
        private readonly StringBuilder _current = new();
        private readonly List<string> _lines = [];
        public override Encoding Encoding => Encoding.UTF8;
        public IReadOnlyList<string> Lines { get { lock (_lines) return _lines.ToArray(); } }
        public override void Write(char value)
        {
            lock (_lines)
            {
                if (value == '\n') { _lines.Add(_current.ToString().TrimEnd('\r')); _current.Clear(); }
                else _current.Append(value);
            }
        }
    }
}
