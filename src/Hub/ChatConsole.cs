using System.Diagnostics;
using Hub.Generation;
using Hub.Generation.Chat;

namespace Hub;

/// <summary>
/// The interactive console loop shared by <c>hub chat</c> and samples/Chat: reads lines, streams answers with
/// tokens/s, understands <c>/reset</c>, <c>/system TEXT</c> (a bare <c>/system</c> shows the current prompt) and
/// <c>/exit</c>. With a <see cref="ChatInterrupt"/> (which <see cref="RunConsole"/> wires to Ctrl-C), an interrupt during
/// an answer stops that answer and returns to the prompt; an interrupt at the prompt ends the chat with
/// <see cref="InterruptedExitCode"/>.
/// </summary>
public static class ChatConsole
{
    /// <summary>Exit code after Ctrl-C at the prompt: 130 (128 + SIGINT), as shells report a process ended by Ctrl-C.</summary>
    public const int InterruptedExitCode = 130;

    /// <summary>Runs the loop until end of input or <c>/exit</c>; returns the exit code.</summary>
    public static int Run(CausalLM model, TextReader input, TextWriter output, GenerationConfig? config = null, string? systemPrompt = null) =>
        Run(model, input, output, config, systemPrompt, interrupt: null);

    /// <summary>
    /// Runs the loop on the process console with Ctrl-C handled: it stops a running answer (the partial answer is kept
    /// in the conversation) or, at the prompt, ends the chat with exit code <see cref="InterruptedExitCode"/>.
    /// </summary>
    public static int RunConsole(CausalLM model, GenerationConfig? config = null, string? systemPrompt = null)
    {
        var interrupt = new ChatInterrupt();
        ConsoleCancelEventHandler onCtrlC = (_, e) => e.Cancel = interrupt.Interrupt();
        Console.CancelKeyPress += onCtrlC;
        try { return Run(model, Console.In, Console.Out, config, systemPrompt, interrupt); }
        finally { Console.CancelKeyPress -= onCtrlC; }
    }

    /// <summary>
    /// Runs the loop until end of input, <c>/exit</c> or an interrupt at the prompt; returns the exit code (0, or
    /// <see cref="InterruptedExitCode"/> after an interrupt at the prompt).
    /// </summary>
    public static int Run(CausalLM model, TextReader input, TextWriter output, GenerationConfig? config, string? systemPrompt, ChatInterrupt? interrupt)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        var session = new ChatSession(model, systemPrompt);
        session.HistoryTruncated += (_, e) => output.WriteLine($"[dropped the {e.DroppedMessages} oldest messages to fit the context of {model.MaxContext} tokens]");
        output.WriteLine($"Chatting with {model.ModelType} ({session.Format.GetType().Name}). Commands: /reset, /system [TEXT], /exit.");
        while (true)
        {
            output.Write("> ");
            output.Flush();
            var (line, interrupted) = interrupt is null ? (input.ReadLine(), false) : interrupt.ReadLine(input);
            if (interrupted) { output.WriteLine(); output.WriteLine("bye"); output.Flush(); return InterruptedExitCode; }
            if (line is null || line.Trim() == "/exit") { output.WriteLine(); output.WriteLine("bye"); return 0; }
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line == "/reset") { session.Reset(); output.WriteLine("[conversation reset]"); continue; }
            if (IsCommand(line, "/system", out var text))
            {
                // A bare /system shows the prompt (it is a command, never a message to the model).
                if (text.Length == 0)
                    output.WriteLine(string.IsNullOrEmpty(session.SystemPrompt)
                        ? "[no system prompt; set one with /system TEXT]"
                        : $"[system prompt: {session.SystemPrompt}]");
                else { session.SystemPrompt = text; session.Reset(); output.WriteLine("[system prompt set; conversation reset]"); }
                continue;
            }
            var sw = Stopwatch.StartNew();
            ChatReply reply;
            var ct = interrupt?.BeginAnswer() ?? default;
            try { reply = session.Send(line, config, piece => { output.Write(piece); output.Flush(); }, ct); }
            finally { interrupt?.EndAnswer(); }
            sw.Stop();
            output.WriteLine();
            if (reply.FinishReason == FinishReason.Cancelled) output.WriteLine("[answer stopped]");
            output.WriteLine($"[{reply.Ids.Length} tokens, {reply.Ids.Length / Math.Max(sw.Elapsed.TotalSeconds, 1e-9):F1} tokens/s, {reply.FinishReason}, reused {reply.ReusedTokens} cached tokens]");
        }
    }

    // line is `name` alone or `name` + whitespace + argument (trimmed into text).
    private static bool IsCommand(string line, string name, out string text)
    {
        text = "";
        if (!line.StartsWith(name, StringComparison.Ordinal) || (line.Length > name.Length && !char.IsWhiteSpace(line[name.Length]))) return false;
        text = line[name.Length..].Trim();
        return true;
    }
}

/// <summary>
/// Routes an interrupt (Ctrl-C) to <see cref="ChatConsole"/>: during an answer it cancels that answer; at the prompt it
/// ends the chat. Thread-safe: <see cref="Interrupt"/> is called from the console's signal handler thread.
/// </summary>
public sealed class ChatInterrupt
{
    private readonly object _lock = new();
    private readonly TaskCompletionSource _quit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _answer;
    private Task<string?>? _pendingRead;

    /// <summary>
    /// Interrupts: cancels the running answer, or (at the prompt) asks the chat to end. Returns true, the value for
    /// <see cref="ConsoleCancelEventArgs.Cancel"/> (the process is not killed; the chat ends itself).
    /// </summary>
    public bool Interrupt()
    {
        lock (_lock)
        {
            if (_answer is { } answer) answer.Cancel();
            else _quit.TrySetResult();
        }
        return true;
    }

    internal CancellationToken BeginAnswer()
    {
        lock (_lock)
        {
            _answer = new CancellationTokenSource();
            return _answer.Token;
        }
    }

    internal void EndAnswer()
    {
        lock (_lock)
        {
            _answer?.Dispose();
            _answer = null;
        }
    }

    // A blocking ReadLine cannot be interrupted, so it runs on a worker; an interrupt at the prompt returns at once and
    // leaves that read pending (the process is ending; a read that completes later is used by the next prompt).
    internal (string? Line, bool Interrupted) ReadLine(TextReader input)
    {
        var read = _pendingRead ??= Task.Run(input.ReadLine);
        if (Task.WaitAny(read, _quit.Task) == 1 && !read.IsCompleted) return (null, true);
        _pendingRead = null;
        return (read.GetAwaiter().GetResult(), false);
    }
}
