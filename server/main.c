/* main.c: the flowscore binary dispatches to its subcommands (cmd.h). */
#include "cmd.h"

#include <cblas.h>

#include <stdio.h>
#include <string.h>

typedef struct fs_subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} fs_subcommand;

static const fs_subcommand fs_subcommands[] = {
    { "serve", fs_cmd_serve, "run the HTTP/JSON scoring daemon" },
    { "train", fs_cmd_train, "train a model on a CSV file" },
    { "eval", fs_cmd_eval, "AUROC/AUPRC of a model on a labelled CSV file" },
    { "score", fs_cmd_score, "score the rows of a CSV file" },
    { "sample", fs_cmd_sample, "draw records from a model" },
    { "inspect", fs_cmd_inspect, "print a model file's header as JSON" },
    { "import", fs_cmd_import, "import a PyTorch ref-realnvp JSON export" },
    { "spool", fs_cmd_spool, "inspect a model's record spool (spool inspect STATE_DIR NAME)" },
};

static void usage(FILE *out)
{
    fprintf(out, "usage: flowscore <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof fs_subcommands / sizeof fs_subcommands[0]; i++) {
        fprintf(out, "  %-8s %s\n", fs_subcommands[i].name, fs_subcommands[i].summary);
    }
    fprintf(out,
            "\n'flowscore <command> --help' describes a command's options.\n"
            "flowscore %s; see flowscore(1).\n",
            FS_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("flowscore %s\n", FS_VERSION);
        return 0;
    }
    /*
     * Every command gets its parallelism from its own threads (serve: the worker pool; train:
     * --threads); OpenBLAS threads on top would oversubscribe the cores and serialise
     * concurrent calls (serving.md, pitfall 15).
     */
    openblas_set_num_threads(1);
    for (size_t i = 0; i < sizeof fs_subcommands / sizeof fs_subcommands[0]; i++) {
        if (strcmp(argv[1], fs_subcommands[i].name) == 0) {
            return fs_subcommands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "flowscore: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
