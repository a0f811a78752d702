_agentic_onnx_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _AGENTIC_ONNX_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _agentic_onnx_completion agentic-onnx
