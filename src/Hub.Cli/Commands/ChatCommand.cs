using System.CommandLine;

namespace Hub.Cli.Commands;

/// <summary><c>hub chat</c>: interactive console chat (filled in with the generation library).</summary>
public static class ChatCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var cmd = new Command("chat", "Interactive chat with a causal LM, streaming the answers.");
        m.AddTo(cmd);
        cmd.SetAction(r => CliRunner.Run(() => throw new UnsupportedModelException("hub chat is not wired yet")));
        return cmd;
    }
}
