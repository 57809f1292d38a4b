using System.CommandLine;
using Hub.Cli.Commands;

namespace Hub.Cli;

/// <summary>The <c>hub</c> command: download, convert, run and serve models.</summary>
public static class Program
{
    /// <summary>Entry point; exit code 0 on success, 1 on bad input (one-line message on stderr), 2 on unexpected errors.</summary>
    public static int Main(string[] args) => BuildRoot().Parse(args).Invoke();

    /// <summary>The root command with every subcommand (exposed for in-process tests).</summary>
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("Hub: download Hugging Face models, convert them to Hub IR and run them on the CPU.");
        foreach (var c in new[]
        {
            ConvertCommand.Create(), GenerateCommand.Create(), LogitsCommand.Create(), InfoCommand.Create(),
            ChatCommand.Create(), BenchCommand.Create(), BenchModelCommand.Create(), ServeCommand.Create(), DownloadCommand.Create(),
            ClassifyCommand.Create(), EmbedCommand.Create(), AccuracyCommand.Create(),
        })
            root.Subcommands.Add(c);
        return root;
    }
}
