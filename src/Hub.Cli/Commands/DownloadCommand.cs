using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using Hub.Client;
using Spectre.Console;

namespace Hub.Cli.Commands;

/// <summary><c>hub download &lt;repo_id&gt; [files...]</c>: fills the shared Hugging Face cache (like <c>huggingface-cli download</c>) and prints the local path.</summary>
public static class DownloadCommand
{
    /// <summary>Builds the command; the lead adds it to the root command.</summary>
    public static Command Create()
    {
        var repo = new Argument<string>("repo_id") { Description = "Repo id, e.g. openai-community/gpt2" };
        var files = new Argument<string[]>("filenames") { Description = "Files to download (default: the whole repo, filtered by --include/--exclude)", Arity = ArgumentArity.ZeroOrMore };
        var revision = new Option<string?>("--revision") { Description = "Branch, tag or commit sha (default: main)" };
        var include = new Option<string[]>("--include") { Description = "fnmatch glob(s) of files to keep ('*' also matches '/')", AllowMultipleArgumentsPerToken = true };
        var exclude = new Option<string[]>("--exclude") { Description = "fnmatch glob(s) of files to skip", AllowMultipleArgumentsPerToken = true };
        var cacheDir = new Option<string?>("--cache-dir") { Description = "Cache root (default: HF_HUB_CACHE or ~/.cache/huggingface/hub)" };
        var endpoint = new Option<string?>("--endpoint") { Description = "Hub URL (default: HF_ENDPOINT or the public hub)" };
        var token = new Option<string?>("--token") { Description = "Access token (default: HF_TOKEN or the token file); never printed" };
        var offline = new Option<bool>("--offline") { Description = "Use the cache only (like HF_HUB_OFFLINE=1)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress output; print only the path" };
        var cmd = new Command("download", "Download a model repo (or some of its files) into the shared Hugging Face cache")
        {
            repo, files, revision, include, exclude, cacheDir, endpoint, token, offline, quiet,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            var options = HubClientOptions.FromEnvironment();
            if (parse.GetValue(cacheDir) is { Length: > 0 } cd) options.CacheDir = cd;
            if (parse.GetValue(endpoint) is { Length: > 0 } ep) options.Endpoint = ep;
            if (parse.GetValue(token) is { Length: > 0 } tk) options.Token = tk;
            if (parse.GetValue(offline)) options.Offline = true;
            var showProgress = !parse.GetValue(quiet) && !options.DisableProgressBars;
            var repoId = parse.GetValue(repo)!;
            var rev = parse.GetValue(revision);
            var wanted = parse.GetValue(files) ?? [];
            // A terminal gets Spectre.Console bars per file (like huggingface-cli's tqdm); redirected stderr gets one
            // plain line per finished file, so logs stay readable.
            if (showProgress && !Console.IsErrorRedirected && ReferenceEquals(error, Console.Error))
            {
                var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
                int code = 0;
                string? path = null;
                await console.Progress()
                    .AutoClear(false)
                    .HideCompleted(false)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                    .StartAsync(async ctx => (code, path) = await RunAsync(new SpectreBars(ctx)));
                // The path goes to stdout only after the bars' last render, so it is never drawn over.
                if (path is not null) await output.WriteLineAsync(path);
                return code;
            }
            using var line = showProgress ? new ProgressLine(error) : null;
            var (rc, dir) = await RunAsync(line);
            if (dir is not null) await output.WriteLineAsync(dir);
            return rc;

            async Task<(int Code, string? Path)> RunAsync(IProgress<DownloadProgress>? bar)
            {
                try
                {
                    using var client = new HubClient(options);
                    string result;
                    if (wanted.Length == 1)
                        result = await client.DownloadFileAsync(repoId, wanted[0], rev, null, bar, ct);
                    else if (wanted.Length > 1)
                    {
                        string last = "";
                        foreach (var f in wanted) last = await client.DownloadFileAsync(repoId, f, rev, null, bar, ct);
                        var commit = client.Cache.ResolveCommit(repoId, rev ?? "main");
                        result = commit is not null ? client.Cache.SnapshotDir(repoId, commit) : Path.GetDirectoryName(last)!;
                    }
                    else
                    {
                        var inc = parse.GetValue(include) is { Length: > 0 } i ? i : null;
                        var exc = parse.GetValue(exclude) is { Length: > 0 } e ? e : null;
                        result = await client.SnapshotDownloadAsync(repoId, rev, inc, exc, bar, ct);
                    }
                    (bar as ProgressLine)?.Finish();
                    return (0, result);
                }
                catch (HubException e)
                {
                    (bar as ProgressLine)?.Finish();
                    await error.WriteLineAsync($"error: {e.Message}");
                    return (1, null);
                }
                catch (ArgumentException e)
                {
                    (bar as ProgressLine)?.Finish();
                    await error.WriteLineAsync($"error: {e.Message}");
                    return (2, null);
                }
            }
        });
        return cmd;
    }

    /// <summary>One Spectre.Console bar per file, created when the file's first progress report arrives.</summary>
    private sealed class SpectreBars(ProgressContext ctx) : IProgress<DownloadProgress>
    {
        private readonly ConcurrentDictionary<string, ProgressTask> _tasks = new(StringComparer.Ordinal);

        public void Report(DownloadProgress p)
        {
            var task = _tasks.GetOrAdd(p.Filename, name => ctx.AddTask(Markup.Escape(name), maxValue: Math.Max(1, p.TotalBytes ?? 1)));
            if (p.TotalBytes is long total && total > 0) task.MaxValue = total;
            task.Value = p.BytesDownloaded;
            if (p.Completed) { task.Value = task.MaxValue; task.StopTask(); }
        }
    }

    /// <summary>One self-overwriting status line on stderr (a plain line per finished file when stderr is not a terminal).</summary>
    private sealed class ProgressLine : IProgress<DownloadProgress>, IDisposable
    {
        private readonly TextWriter _w;
        private readonly bool _tty = !Console.IsErrorRedirected;
        private readonly ConcurrentDictionary<string, (long Done, long Total)> _files = new(StringComparer.Ordinal);
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly object _lock = new();
        private long _lastDraw = -1000;
        private int _finished;

        public ProgressLine(TextWriter w) => _w = w;

        public void Report(DownloadProgress p)
        {
            _files[p.Filename] = (p.BytesDownloaded, p.TotalBytes ?? 0);
            lock (_lock)
            {
                if (p.Completed)
                {
                    _finished++;
                    if (!_tty) _w.WriteLine($"downloaded {p.Filename} ({Mb(p.TotalBytes ?? p.BytesDownloaded)})");
                }
                if (!_tty) return;
                var now = _clock.ElapsedMilliseconds;
                if (now - _lastDraw < 100 && !p.Completed) return;
                _lastDraw = now;
                long done = 0, total = 0;
                foreach (var v in _files.Values) { done += v.Done; total += v.Total; }
                var pct = total > 0 ? 100.0 * done / total : 0;
                var width = 30;
                var filled = (int)(width * pct / 100);
                var speed = done / Math.Max(0.001, _clock.Elapsed.TotalSeconds);
                _w.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {pct,5:F1}% {Mb(done)}/{Mb(total)} {Mb((long)speed)}/s files {_finished}/{_files.Count}   ");
            }
        }

        private static string Mb(long bytes) => $"{bytes / (1024.0 * 1024.0):F1} MB";

        public void Finish()
        {
            lock (_lock)
            {
                if (_tty && _files.Count > 0) _w.WriteLine();
                _files.Clear();
            }
        }

        public void Dispose() { }
    }
}
