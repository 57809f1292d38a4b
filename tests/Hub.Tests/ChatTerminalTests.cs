using System.Diagnostics;
using System.Text.RegularExpressions;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>
/// <c>hub chat</c> as a user sees it: the CLI runs in a real pseudo-terminal (a detached tmux session on a private
/// server socket in the temp folder), keys are typed with send-keys and the screen is read with capture-pane. Every wait polls the screen
/// with a generous timeout; nothing asserts on time.
/// </summary>
public sealed class ChatTerminalTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);
    private readonly string _tmp = SharedDir.TempDir("hub-chat-tty");

    public void Dispose()
    {
        Tmux(allowFailure: true, "kill-server");
        try { Directory.Delete(_tmp, true); } catch (IOException) { }
    }

    [SkippableTheory]
    [InlineData("models/karpathy/tinyllamas/stories260K")]
    [InlineData("fixtures/gpt2-tiny")]
    public void Hub_chat_in_a_terminal_answers_streams_resets_and_exits_cleanly(string model)
    {
        var dir = SharedDir.Require(model);
        Skip.If(!OnPath("tmux"), "tmux is not installed (.ci/run installs it): the pseudo-terminal chat test needs it");

        // Session 1: two turns, /reset, the first message again, /exit.
        Start("s1", dir);
        var screen = WaitFor("s1", s => s.Contains("Commands: /reset"), "the chat banner");
        Type("s1", "Hello there");
        screen = WaitFor("s1", s => Stats(s).Count == 1, "the first answer's tokens/s line");
        var first = Answer(screen, "Hello there", 0);
        Assert.False(string.IsNullOrWhiteSpace(first), $"no answer text appeared before the tokens/s line:\n{screen}");

        Type("s1", "Tell me more");
        screen = WaitFor("s1", s => Stats(s).Count == 2, "the second answer");
        Assert.True(Stats(screen)[1].Reused > 0, $"the second turn re-fed the whole history instead of reusing the cache:\n{screen}");

        Type("s1", "/reset");
        WaitFor("s1", s => s.Contains("[conversation reset]"), "the reset notice");
        Type("s1", "Hello there");
        screen = WaitFor("s1", s => Stats(s).Count == 3, "the answer after /reset");
        // A fresh conversation: nothing reused, and (greedy) the same answer as the very first turn.
        Assert.Equal(0, Stats(screen)[2].Reused);
        Assert.Equal(first, Answer(screen, "Hello there", 1));

        Type("s1", "/exit");
        screen = WaitFor("s1", s => Dead("s1") is not null, "the process to exit after /exit");
        Assert.Equal(0, Dead("s1"));
        Assert.Contains("bye", screen);

        // Session 2: end of input (Ctrl-D at the prompt) exits cleanly too.
        Start("s2", dir);
        WaitFor("s2", s => s.Contains("Commands: /reset"), "the chat banner");
        Type("s2", "Hello there");
        screen = WaitFor("s2", s => Stats(s).Count == 1, "the answer");
        Assert.Equal(first, Answer(screen, "Hello there", 0));
        Tmux(false, "send-keys", "-t", "s2", "C-d");
        screen = WaitFor("s2", s => Dead("s2") is not null, "the process to exit after Ctrl-D");
        Assert.Equal(0, Dead("s2"));
        Assert.Contains("bye", screen);
    }

    private void Start(string session, string modelDir)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "Hub.Cli.dll");
        Assert.True(File.Exists(cli), $"{cli} not built");
        // remain-on-exit keeps the screen readable after the process ends. The exit code comes from a wrapper shell
        // writing it to a file: tmux's own #{pane_dead_status} stays empty when the pane's pty closes before tmux reaps
        // the process, which happens on a loaded machine.
        Tmux(false, "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
             "new-session", "-d", "-x", "200", "-y", "50", "-s", session,
             "-e", $"HUB_CACHE={_tmp}", "-e", "HF_HUB_OFFLINE=1", "-e", "DOTNET_NOLOGO=1",
             "sh", "-c", "dotnet \"$1\" chat \"$2\" --max-new-tokens 16; echo $? > \"$3.tmp\" && mv \"$3.tmp\" \"$3\"",
             "sh", cli, modelDir, ExitFile(session));
    }

    private void Type(string session, string line)
    {
        Tmux(false, "send-keys", "-t", session, "-l", line);
        Tmux(false, "send-keys", "-t", session, "Enter");
    }

    private string Screen(string session) => Tmux(false, "capture-pane", "-p", "-J", "-S", "-", "-t", session);

    private string ExitFile(string session) => Path.Combine(_tmp, session + ".exit");

    // The exit code of hub chat once it ended (written by the wrapper shell), else null.
    private int? Dead(string session) =>
        File.Exists(ExitFile(session)) && int.TryParse(File.ReadAllText(ExitFile(session)).Trim(), out var code) ? code : null;

    private string WaitFor(string session, Func<string, bool> done, string what)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var screen = Screen(session);
            if (done(screen)) return screen;
            if (sw.Elapsed > Patience) Assert.Fail($"waited {Patience.TotalSeconds:F0} s for {what}; the terminal shows:\n{screen}");
            if (Dead(session) is { } code && !done(Screen(session)))
                Assert.Fail($"hub chat exited with code {code} while waiting for {what}; the terminal shows:\n{Screen(session)}");
            Thread.Sleep(100);
        }
    }

    private static readonly Regex StatsLine = new(@"^\[(\d+) tokens, [\d.]+ tokens/s, \w+, reused (\d+) cached tokens\]$", RegexOptions.Multiline);

    private static List<(int Tokens, int Reused)> Stats(string screen) =>
        StatsLine.Matches(screen).Select(m => (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value))).ToList();

    // The text between the n-th "> {message}" prompt line and the next tokens/s line.
    private static string Answer(string screen, string message, int occurrence)
    {
        var lines = screen.Split('\n').Select(l => l.TrimEnd()).ToList();
        int seen = -1;
        for (int i = 0; i < lines.Count; i++)
        {
            if (lines[i] != "> " + message || ++seen != occurrence) continue;
            var answer = new List<string>();
            for (int j = i + 1; j < lines.Count && !StatsLine.IsMatch(lines[j]); j++) answer.Add(lines[j]);
            return string.Join("\n", answer).Trim();
        }
        Assert.Fail($"prompt line '> {message}' #{occurrence} not on screen:\n{screen}");
        return "";
    }

    private string Tmux(bool allowFailure, params string[] args)
    {
        var psi = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-S"); // a private server whose socket goes away with the temp folder
        psi.ArgumentList.Add(Path.Combine(_tmp, "tmux.sock"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("TMUX");
        try
        {
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(30_000)) { p.Kill(true); throw new TimeoutException($"tmux {string.Join(' ', args)} hung"); }
            if (p.ExitCode != 0 && !allowFailure) Assert.Fail($"tmux {string.Join(' ', args)} failed ({p.ExitCode}): {stderr.Result}");
            return stdout.Result;
        }
        catch (System.ComponentModel.Win32Exception) when (allowFailure) { return ""; }
    }

    private static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(d => d.Length > 0 && File.Exists(Path.Combine(d, exe)));
}
