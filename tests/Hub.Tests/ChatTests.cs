using Hub.Generation;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>The console chat loop on real models (driven through reader/writer, as a terminal would).</summary>
public class ChatTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-chat");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableTheory]
    [InlineData("models/karpathy/tinyllamas/stories260K")]
    [InlineData("fixtures/gpt2-tiny")]
    public void Console_chat_answers_streams_resets_and_exits(string model)
    {
        var dir = SharedDir.Require(model);
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var output = new StringWriter();
        int code = ChatConsole.Run(lm, new StringReader("Once upon a time\nWhat next?\n/reset\nHello\n/exit\n"), output, new GenerationConfig { MaxNewTokens = 12 });
        var text = output.ToString();
        Assert.Equal(0, code);
        Assert.Equal(3, text.Split("tokens/s").Length - 1);
        Assert.Contains("[conversation reset]", text);
        Assert.EndsWith("bye" + Environment.NewLine, text);
        Assert.Matches(@"reused [1-9]\d* cached tokens", text); // the second turn reused the first turn's cache
    }

    [SkippableFact]
    public void Bare_system_command_shows_the_prompt_and_is_never_sent_to_the_model()
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var output = new StringWriter();
        // "/system" alone (also with trailing blanks), then set one and show it again.
        int code = ChatConsole.Run(lm, new StringReader("/system\n/system   \n/system Be brief.\n/system\n/exit\n"), output);
        var text = output.ToString();
        Assert.Equal(0, code);
        Assert.Equal(0, lm.ForwardCalls); // nothing reached the model
        Assert.DoesNotContain("tokens/s", text);
        Assert.Equal(2, text.Split("[no system prompt; set one with /system TEXT]").Length - 1);
        Assert.Contains("[system prompt set; conversation reset]", text);
        Assert.Contains("[system prompt: Be brief.]", text);
    }

    [SkippableFact]
    public void Interrupt_during_an_answer_stops_it_and_returns_to_the_prompt()
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var interrupt = new ChatInterrupt();
        // The first piece of the answer is written after "> "; the writer presses "Ctrl-C" right then.
        var output = new InterruptingWriter(interrupt, afterPrompts: 1);
        int code = ChatConsole.Run(lm, new StringReader("Once upon a time\n"), output,
            new GenerationConfig { MaxNewTokens = 200, MinNewTokens = 200 }, null, interrupt);
        var text = output.ToString();
        Assert.Equal(0, code); // end of input after the stopped answer
        Assert.Contains("[answer stopped]", text);
        var stats = System.Text.RegularExpressions.Regex.Match(text, @"\[(\d+) tokens, [\d.]+ tokens/s, Cancelled,");
        Assert.True(stats.Success, text);
        Assert.InRange(int.Parse(stats.Groups[1].Value), 1, 199);
        Assert.EndsWith("bye" + Environment.NewLine, text);
    }

    [SkippableFact]
    public void Interrupt_at_the_prompt_ends_the_chat_with_exit_code_130()
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var interrupt = new ChatInterrupt();
        var output = new InterruptingWriter(interrupt, afterPrompts: 0);
        // A reader that never returns, like a terminal nobody types into.
        using var never = new BlockingReader();
        var run = Task.Run(() => ChatConsole.Run(lm, never, output, null, null, interrupt));
        Assert.True(run.Wait(TimeSpan.FromMinutes(2)), "the chat did not end after the interrupt");
        Assert.Equal(ChatConsole.InterruptedExitCode, run.Result);
        Assert.EndsWith("bye" + Environment.NewLine, output.ToString());
    }

    /// <summary>Calls <see cref="ChatInterrupt.Interrupt"/> on the first write after the n-th "> " prompt.</summary>
    private sealed class InterruptingWriter(ChatInterrupt interrupt, int afterPrompts) : StringWriter
    {
        private int _prompts, _fired;

        public override void Write(string? value)
        {
            base.Write(value);
            if (value == "> ") { if (++_prompts == 1 && afterPrompts == 0) Fire(); }
            else if (afterPrompts > 0 && _prompts == afterPrompts && !string.IsNullOrEmpty(value)) Fire();
        }

        private void Fire()
        {
            if (Interlocked.Exchange(ref _fired, 1) == 0) interrupt.Interrupt();
        }
    }

    private sealed class BlockingReader : TextReader
    {
        private readonly ManualResetEventSlim _never = new();
        public override string? ReadLine() { _never.Wait(); return null; }
        protected override void Dispose(bool disposing) { _never.Set(); base.Dispose(disposing); }
    }
}
