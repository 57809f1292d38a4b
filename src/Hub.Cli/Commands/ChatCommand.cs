using System.CommandLine;
using Hub.Generation;

namespace Hub.Cli.Commands;

/// <summary><c>hub chat</c>: interactive console chat with streaming and tokens/s per answer.</summary>
public static class ChatCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var maxNew = new Option<int>("--max-new-tokens") { Description = "longest answer in tokens", DefaultValueFactory = _ => 128 };
        var system = new Option<string?>("--system") { Description = "system prompt" };
        var sample = new Option<bool>("--sample") { Description = "sample (temperature/top-p from the repo's generation_config.json) instead of greedy" };
        var cmd = new Command("chat", "Interactive chat with a causal LM, streaming the answers (/reset, /system TEXT, /exit).");
        m.AddTo(cmd);
        cmd.Options.Add(maxNew); cmd.Options.Add(system); cmd.Options.Add(sample);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            using var lm = CausalLM.FromPretrained(r.GetValue(m.Model)!, export: true, m.Options(r));
            var cfg = new GenerationConfig { MaxNewTokens = r.GetValue(maxNew), DoSample = r.GetValue(sample) };
            return ChatConsole.RunConsole(lm, cfg, r.GetValue(system));
        }));
        return cmd;
    }
}
