using System.Diagnostics;
using Hub.Generation;

namespace Hub;

/// <summary>
/// The interactive console loop shared by <c>hub chat</c> and samples/Chat: reads lines, streams answers with
/// tokens/s, understands <c>/reset</c>, <c>/system TEXT</c> and <c>/exit</c>.
/// </summary>
public static class ChatConsole
{
    /// <summary>Runs the loop until end of input or <c>/exit</c>; returns the exit code.</summary>
    public static int Run(CausalLM model, TextReader input, TextWriter output, GenerationConfig? config = null, string? systemPrompt = null)
    {
        var session = new ChatSession(model, systemPrompt);
        session.HistoryTruncated += (_, e) => output.WriteLine($"[dropped the {e.DroppedMessages} oldest messages to fit the context of {model.MaxContext} tokens]");
        output.WriteLine($"Chatting with {model.ModelType} ({session.Format.GetType().Name}). Commands: /reset, /system TEXT, /exit.");
        while (true)
        {
            output.Write("> ");
            output.Flush();
            var line = input.ReadLine();
            if (line is null || line.Trim() == "/exit") { output.WriteLine(); output.WriteLine("bye"); return 0; }
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line == "/reset") { session.Reset(); output.WriteLine("[conversation reset]"); continue; }
            if (line.StartsWith("/system ", StringComparison.Ordinal)) { session.SystemPrompt = line[8..]; session.Reset(); output.WriteLine("[system prompt set; conversation reset]"); continue; }
            var sw = Stopwatch.StartNew();
            var reply = session.Send(line, config, piece => { output.Write(piece); output.Flush(); });
            sw.Stop();
            output.WriteLine();
            output.WriteLine($"[{reply.Ids.Length} tokens, {reply.Ids.Length / Math.Max(sw.Elapsed.TotalSeconds, 1e-9):F1} tokens/s, {reply.FinishReason}, reused {reply.ReusedTokens} cached tokens]");
        }
    }
}
