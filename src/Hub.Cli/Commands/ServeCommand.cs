using System.CommandLine;
using Hub.Mirror;

namespace Hub.Cli.Commands;

/// <summary><c>hub serve &lt;root&gt;</c>: a Hugging Face-compatible mirror of a folder of <c>org/name</c> repos, for air-gapped teams (point HF_ENDPOINT at it).</summary>
public static class ServeCommand
{
    /// <summary>Builds the command; the lead adds it to the root command.</summary>
    public static Command Create()
    {
        var root = new Argument<DirectoryInfo>("root") { Description = "Folder whose <org>/<name> sub-folders are served as model repos" };
        var port = new Option<int>("--port", "-p") { Description = "Port to listen on (0 picks a free one)", DefaultValueFactory = _ => 0 };
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 exposes the mirror to the network)", DefaultValueFactory = _ => "127.0.0.1" };
        var gated = new Option<string[]>("--gated") { Description = "Repo id that requires a token (repeatable); the token is read from HUB_MIRROR_TOKEN", AllowMultipleArgumentsPerToken = true };
        var lfs = new Option<long>("--lfs-threshold") { Description = "Files larger than this many bytes are served as LFS files (sha256 etag)", DefaultValueFactory = _ => 1024 * 1024 };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Print one line per request" };
        var cmd = new Command("serve", "Serve a folder of model repos with the Hugging Face hub protocol (HF_ENDPOINT-compatible)")
        {
            root, port, host, gated, lfs, verbose,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            var dir = parse.GetValue(root)!;
            if (!dir.Exists)
            {
                await error.WriteLineAsync($"error: {dir.FullName} does not exist; pass a folder holding <org>/<name> repo folders.");
                return 2;
            }
            var options = new MirrorOptions
            {
                Root = dir.FullName,
                Host = parse.GetValue(host) ?? "127.0.0.1",
                Port = parse.GetValue(port),
                LfsThreshold = parse.GetValue(lfs),
                RequiredToken = Environment.GetEnvironmentVariable("HUB_MIRROR_TOKEN") is { Length: > 0 } t ? t : null,
            };
            foreach (var g in parse.GetValue(gated) ?? []) options.GatedRepos.Add(g);
            if (options.GatedRepos.Count > 0 && options.RequiredToken is null)
                await error.WriteLineAsync("warning: --gated given but HUB_MIRROR_TOKEN is not set: gated repos will refuse every request.");
            if (parse.GetValue(verbose)) options.RequestLog = line => output.WriteLine(line);
            MirrorServer server;
            try { server = await MirrorServer.StartAsync(options, ct); }
            catch (IOException e)
            {
                await error.WriteLineAsync($"error: cannot listen on {options.Host}:{options.Port}: {e.Message}");
                return 1;
            }
            await using (server)
            {
                var url = server.BaseAddress.ToString().TrimEnd('/');
                await output.WriteLineAsync($"Serving {dir.FullName} at {url}");
                await output.WriteLineAsync($"Use it with: export HF_ENDPOINT={url}   (Ctrl+C to stop)");
                await output.FlushAsync(ct);
                try { await Task.Delay(Timeout.Infinite, ct); }
                catch (OperationCanceledException) { }
                await output.WriteLineAsync($"Stopped after {server.RequestCount} requests, {server.BytesServed} bytes served.");
            }
            return 0;
        });
        return cmd;
    }
}
