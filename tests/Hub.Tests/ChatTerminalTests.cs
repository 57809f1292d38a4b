using System.Diagnostics;
using System.Text.RegularExpressions;
using Hub.Cli.Commands;
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

    [SkippableFact]
    public void Ctrl_c_stops_a_running_answer_and_at_the_prompt_exits_with_130()
    {
        Skip.If(!OnPath("tmux"), "tmux is not installed (.ci/run installs it): the pseudo-terminal chat test needs it");
        // A generated model big enough that an answer of ~1800 tokens takes seconds (the fixtures answer in
        // milliseconds, too fast to interrupt), with end-of-sequence held off so the answer cannot end by itself early.
        var dir = Path.Combine(_tmp, "slow-model");
        BenchModelCommand.Write(dir, new BenchModelCommand.Shape(Dim: 512, Layers: 6, Heads: 8, KvHeads: 8, Ffn: 1376, Vocab: 600, Shards: 1), seed: 3, DType.F32);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"min_new_tokens": 1800, "eos_token_id": 2}""");

        Start("c1", dir, maxNewTokens: 1800);
        Type("c1", "Hello there");
        // Interrupt once the answer is streaming (text below the prompt line, no tokens/s line yet).
        WaitFor("c1", s => AnswerStarted(s, "Hello there"), "the answer to start streaming");
        Tmux(false, "send-keys", "-t", "c1", "C-c");
        var screen = WaitFor("c1", s => Stats(s).Count == 1, "the stopped answer's tokens/s line");
        Assert.Contains("[answer stopped]", screen);
        Assert.Matches(@"\[\d+ tokens, [\d.]+ tokens/s, Cancelled,", screen);
        Assert.True(Stats(screen)[0].Tokens < 1800, $"the answer ran to its end instead of stopping:\n{screen}");
        Assert.Null(Dead("c1")); // still chatting

        // The chat goes on after the stopped answer.
        Type("c1", "/reset");
        WaitFor("c1", s => s.Contains("[conversation reset]"), "the reset notice");

        // Ctrl-C at the prompt ends the chat cleanly with 130 (128 + SIGINT), after saying bye.
        WaitForPrompt("c1");
        Tmux(false, "send-keys", "-t", "c1", "C-c");
        screen = WaitFor("c1", s => Dead("c1") is not null, "the process to exit after Ctrl-C at the prompt");
        Assert.Equal(130, Dead("c1"));
        Assert.Contains("bye", screen);
    }

    private static bool AnswerStarted(string screen, string message)
    {
        var lines = screen.Split('\n').Select(l => l.TrimEnd()).ToList();
        int at = lines.FindIndex(l => IsPromptLine(l, message));
        return at >= 0 && lines.Skip(at + 1).Any(l => l.Length > 0) && Stats(screen).Count == 0;
    }

    private void Start(string session, string modelDir, int maxNewTokens = 16)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "Hub.Cli.dll");
        Assert.True(File.Exists(cli), $"{cli} not built");
        // remain-on-exit keeps the screen readable after the process ends. The exit code comes from a wrapper shell
        // writing it to a file: tmux's own #{pane_dead_status} stays empty when the pane's pty closes before tmux reaps
        // the process, which happens on a loaded machine.
        string[] args =
        [
            "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-x", "200", "-y", "50", "-s", session,
            "-e", $"HUB_CACHE={_tmp}", "-e", "HF_HUB_OFFLINE=1", "-e", "DOTNET_NOLOGO=1",
            // The wrapper traps SIGINT (a handler, not an ignore, so the chat still gets Ctrl-C) so it survives to report the code.
            "sh", "-c", "trap : INT; dotnet \"$1\" chat \"$2\" --max-new-tokens \"$4\"; echo $? > \"$3.tmp\" && mv \"$3.tmp\" \"$3\"",
            "sh", cli, modelDir, ExitFile(session), maxNewTokens.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ];
        // A loaded machine has failed to start the server/session once: retry once on a fresh server before failing.
        Tmux(allowFailure: true, args);
        if (!HasSession(session))
        {
            Tmux(allowFailure: true, "kill-server");
            Tmux(false, args);
        }
        // Keys typed before the chat reads its first line can be dropped (the console resets the terminal when it
        // starts), so nothing is typed until the prompt is on screen.
        WaitForPrompt(session);
    }

    private bool HasSession(string session) =>
        Tmux(allowFailure: true, "list-sessions", "-F", "#{session_name}").Split('\n').Any(l => l.Trim() == session);

    // The chat's "> " prompt is the last line on screen (capture-pane drops its trailing space).
    private void WaitForPrompt(string session) =>
        WaitFor(session, s => s.Split('\n').Select(l => l.TrimEnd()).LastOrDefault(l => l.Length > 0) == ">", "the chat prompt");

    private void Type(string session, string line)
    {
        WaitForPrompt(session);
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

    // The prompt line of a typed message. Keys that reach the terminal after the prompt is drawn but before the console
    // switches the terminal to its own echo for the read are echoed twice (by the terminal and by the console): on a
    // loaded machine that window is wide enough to hit, and the line then shows the message twice.
    private static bool IsPromptLine(string line, string message) => line == "> " + message || line == "> " + message + message;

    // The text between the n-th "> {message}" prompt line and the next tokens/s line.
    private static string Answer(string screen, string message, int occurrence)
    {
        var lines = screen.Split('\n').Select(l => l.TrimEnd()).ToList();
        int seen = -1;
        for (int i = 0; i < lines.Count; i++)
        {
            if (!IsPromptLine(lines[i], message) || ++seen != occurrence) continue;
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
